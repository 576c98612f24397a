"""The indexer's parse-ahead holds at most PARSE_AHEAD files and PARSE_AHEAD_BYTES of them in flight."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from ingest.discovery import SourceFile
from rag import indexing
from rag.indexing import Indexer


def _in_flight(files: list[SourceFile], monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[str]]:
    """Files submitted and not yet consumed at each yield; the submission order."""
    submitted: list[str] = []

    class Immediate:  # the real parse, run at submit time, so submissions can be counted exactly
        def __init__(self, **_: Any) -> None:
            pass

        def submit(self, fn: Any, *args: Any) -> Future[Any]:
            submitted.append(args[0].source)
            future: Future[Any] = Future()
            future.set_result(fn(*args))
            return future

        def shutdown(self, **_: Any) -> None:
            pass

    class Parser:
        def _parse(self, file: SourceFile, work: object, parsed: object) -> str:
            return file.path.read_text()[:10]

    monkeypatch.setattr(indexing, "ThreadPoolExecutor", Immediate)
    flight, order = [], []
    for i, result in enumerate(Indexer._parse_ahead(Parser(), files, None, {}), start=1):  # type: ignore[arg-type]
        flight.append(len(submitted) - (i - 1))
        order.append(result)
    assert len(order) == len(files)
    return flight, submitted


def test_parse_ahead_keeps_to_its_byte_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = []
    for i in range(10):
        path = tmp_path / f"f{i}.txt"
        path.write_text(str(i) * 1_000_000)
        files.append(SourceFile(path, path.name))
    monkeypatch.setattr(indexing, "PARSE_AHEAD_BYTES", 2_500_000)
    flight, submitted = _in_flight(files, monkeypatch)
    assert max(flight) == 3  # 1 MB + 1 MB + 1 MB reaches 2.5 MB: no fourth until one is consumed
    assert submitted == [f.source for f in files]  # in order, each once


def test_parse_ahead_of_small_files_is_bounded_by_count_and_a_huge_file_still_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = []
    for i in range(40):
        path = tmp_path / f"s{i}.txt"
        path.write_text("x")
        files.append(SourceFile(path, path.name))
    flight, _ = _in_flight(files, monkeypatch)
    assert max(flight) == indexing.PARSE_AHEAD
    big = tmp_path / "big.txt"
    big.write_text("y" * 3_000_000)
    monkeypatch.setattr(indexing, "PARSE_AHEAD_BYTES", 1_000_000)
    flight, _ = _in_flight([SourceFile(big, "big.txt"), *files[:3]], monkeypatch)
    assert flight[0] == 1  # a file over the budget is parsed alone, nothing beside it

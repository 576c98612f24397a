"""The real `rag` console script on a real on-disk KB, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_sample_docs

RAG = str(Path(sys.executable).with_name("rag"))


def rag(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_HOME": str(home)}
    result = subprocess.run([RAG, *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_sample_docs(tmp_path_factory.mktemp("odd") / "docs")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "corrupt.docx").write_bytes(b"PK\x03\x04not a zip at all")
    (folder / "truncated.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <<")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "notes.utf16.txt").write_bytes("Meeting notes: the budget was approved.".encode("utf-16"))
    (folder / "archive.bin").write_bytes(b"\x00\x01")
    return folder


def test_ingest_search_list_delete(tmp_path: Path, odd_folder: Path) -> None:
    home = tmp_path / "home"
    rag(home, "kb", "create", "docs", "--description", "team docs")
    report = json.loads(rag(home, "ingest", "--kb", "docs", str(odd_folder), "--json").stdout)
    assert report["kb"] == "docs" and report["added"] == 4
    failed = {f["path"]: f["error"] for f in report["failed"]}
    assert set(failed) == {"empty.txt", "corrupt.docx", "truncated.pdf", "binary.txt", "archive.bin"}
    assert "empty" in failed["empty.txt"] and "damaged" in failed["corrupt.docx"]
    assert "unsupported" in failed["archive.bin"] and "binary" in failed["binary.txt"]
    assert {"added", "updated", "unchanged", "deleted", "failed", "chunks", "seconds"} <= report.keys()

    again = json.loads(rag(home, "ingest", "--kb", "docs", str(odd_folder), "--json").stdout)
    assert again["unchanged"] == 4 and again["added"] == 0

    result = json.loads(rag(home, "search", "--kb", "docs", "budget approved", "--top-k", "2", "--json").stdout)
    assert result["query"] == "budget approved"
    top = result["hits"][0]
    assert top["source"] == "notes.utf16.txt"
    assert set(top) == {"chunk_id", "doc_id", "source", "page", "text", "score", "heading"}

    listing = json.loads(rag(home, "kb", "list", "--json").stdout)
    assert listing == {"kbs": [{"name": "docs", "description": "team docs", "documents": 4,
                                "chunks": listing["kbs"][0]["chunks"]}]}
    assert listing["kbs"][0]["chunks"] >= 4

    rag(home, "kb", "delete", "docs", "--yes")
    assert json.loads(rag(home, "kb", "list", "--json").stdout) == {"kbs": []}


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cases = [
        ("search", "--kb", "nope", "hello"),
        ("kb", "create", "bad/name"),
        ("ingest", "--kb", "nope", str(tmp_path)),
        ("kb", "delete", "nope"),
    ]
    for args in cases:
        result = rag(home, *args, check=False)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr, args
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert result.stderr.startswith("error: "), result.stderr
    rag(home, "kb", "create", "k")
    missing = rag(home, "ingest", "--kb", "k", str(tmp_path / "does-not-exist"), check=False)
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr


def test_bad_config_file_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("retrieval: [unclosed")
    env = {**os.environ, "RAG_HOME": str(tmp_path / "h"), "RAG_CONFIG": str(config)}
    result = subprocess.run([RAG, "kb", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1 and "not valid YAML" in result.stderr and "Traceback" not in result.stderr

"""`rag docs list|show|chunks|delete` as a user runs them, on a real KB on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import load_settings
from rag.errors import OriginalNotKept
from rag.service import RagService
from tests.conftest import write_sample_docs

RAG = str(Path(sys.executable).with_name("rag"))


def rag(home: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([RAG, *args], capture_output=True, text=True, env={**os.environ, "RAG_HOME": str(home)},
                            timeout=300)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    return result


def test_list_show_chunks_delete(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = write_sample_docs(tmp_path / "docs")
    rag(home, "kb", "create", "notes")
    rag(home, "ingest", "--kb", "notes", str(docs))

    listed = json.loads(rag(home, "docs", "list", "--kb", "notes", "--json").stdout)["documents"]
    by_source = {doc["source"]: doc for doc in listed}
    assert set(by_source) == {"travel/chengdu.md", "travel/成都美食.txt", "handbook/vacation.txt"}
    doc_id = by_source["travel/chengdu.md"]["doc_id"]
    assert "travel/chengdu.md" in rag(home, "docs", "list", "--kb", "notes").stdout  # the table

    shown = json.loads(rag(home, "docs", "show", "--kb", "notes", doc_id, "--json").stdout)
    assert shown["doc_id"] == doc_id and shown["status"] == "indexed" and shown["format"]

    chunks = json.loads(rag(home, "docs", "chunks", "--kb", "notes", doc_id, "--json").stdout)["chunks"]
    assert len(chunks) == shown["chunks"] and [c["order"] for c in chunks] == list(range(len(chunks)))
    assert all(set(c) == {"chunk_id", "order", "text", "page", "heading", "tokens"} for c in chunks)
    assert any("Shu Jiu Xiang" in c["text"] for c in chunks) and all(c["tokens"] > 0 for c in chunks)
    text = rag(home, "docs", "chunks", "--kb", "notes", doc_id).stdout
    assert "#0" in text and "Shu Jiu Xiang" in text

    # A file ingested from a server path is not kept by the server, so there is no original to hand out.
    service = RagService(load_settings(home=home))
    with pytest.raises(OriginalNotKept, match="not kept"):
        service.document_original("notes", doc_id)
    service.catalog.close()

    refused = rag(home, "docs", "delete", "--kb", "notes", doc_id, code=1)
    assert "--yes" in refused.stderr
    missing = rag(home, "docs", "show", "--kb", "notes", "no-such-doc", code=1)
    assert "no-such-doc" in missing.stderr and "is not in" in missing.stderr
    assert "does not exist" in rag(home, "docs", "list", "--kb", "nokb", code=1).stderr
    rag(home, "docs", "delete", "--kb", "notes", doc_id, "--yes")
    after = json.loads(rag(home, "docs", "list", "--kb", "notes", "--json").stdout)["documents"]
    assert doc_id not in {doc["doc_id"] for doc in after} and len(after) == 2

"""A server killed (SIGKILL) mid-ingest: after a restart the job resumes by itself and ends succeeded, with
every file indexed exactly once (what the first run committed is skipped by its content hash)."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import requests
from api_server import start_server
from job_helpers import FAST_COMMITS, note_files, wait_until

FILES = 50


def committed_documents(home: Path, kb: str) -> int:
    with sqlite3.connect(home / "catalog.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM documents WHERE kb=? AND status='indexed'", (kb,)).fetchone()[0])


def test_a_killed_servers_ingest_resumes_after_restart_without_duplicates(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home, env=FAST_COMMITS)
    try:
        server.wait_ready()
        base = server.base_url
        assert requests.post(f"{base}/api/kbs", json={"name": "survey"}, timeout=30).status_code == 201
        files = [("files", (name, io.BytesIO(body))) for name, body in note_files("survey", FILES)]
        job_id = requests.post(f"{base}/api/kbs/survey/documents", files=files, timeout=120).json()["job_id"]
        wait_until(lambda: committed_documents(home, "survey") >= 5, "the ingest never committed 5 files",
                   timeout=300, every=0.02)
    finally:
        server.stop(kill=True)  # SIGKILL: no chance to clean up
    before = committed_documents(home, "survey")
    assert 0 < before < FILES, f"kill landed at {before} committed documents; the test needs a partial ingest"

    started = time.monotonic()
    # The resumed run uses the default batching (one embedding batch, one commit): it must show the skipping.
    restarted = start_server(home, env={"RAG_LLM__BACKEND": FAST_COMMITS["RAG_LLM__BACKEND"]})
    try:
        base = restarted.base_url
        job = wait_until(lambda: _finished(base, job_id), "the resumed job never ended", timeout=600)
        seconds = time.monotonic() - started
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["unchanged"] == before  # committed before the kill: skipped by content hash
        assert result["added"] == FILES - before
        documents = requests.get(f"{base}/api/kbs/survey/documents", timeout=30).json()["documents"]
        sources = [doc["source"] for doc in documents]
        assert len(documents) == FILES and len(set(sources)) == FILES
        assert {doc["status"] for doc in documents} == {"indexed"}
        assert committed_documents(home, "survey") == FILES
        print(f"\nkill -9 after {before}/{FILES} committed; restart + resume to succeeded in {seconds:.1f}s; "
              f"resumed run: added {result['added']}, unchanged {result['unchanged']}; documents {len(documents)}")
        hits = requests.post(f"{base}/api/kbs/survey/search", json={"query": "survey note 42", "top_k": 3},
                             timeout=60).json()["hits"]
        assert hits
    finally:
        restarted.stop()


def _finished(base: str, job_id: str) -> dict | None:  # type: ignore[type-arg]
    job = requests.get(f"{base}/api/jobs/{job_id}", timeout=10).json()
    return job if job["status"] not in {"queued", "running"} else None

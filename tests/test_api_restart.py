"""A server killed mid-ingest: after a restart its job reads failed with a reason, and the KB still works."""

from __future__ import annotations

import io
import time
from pathlib import Path

import requests
from api_server import start_server, wait_for_job


def big_text(lines: int) -> bytes:
    words = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "isthmus", "juniper"]
    return "\n".join(f"Record {i}: the {words[i % 10]} survey measured {i * 7} units in sector {i % 97}."
                     for i in range(lines)).encode()


def test_restart_marks_running_job_failed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home)
    try:
        base = server.base_url
        assert requests.post(f"{base}/api/kbs", json={"name": "big"}, timeout=30).status_code == 201
        files = [("files", ("survey.txt", io.BytesIO(big_text(40_000))))]
        job_id = requests.post(f"{base}/api/kbs/big/documents", files=files, timeout=120).json()["job_id"]
        deadline = time.monotonic() + 60
        while requests.get(f"{base}/api/jobs/{job_id}", timeout=10).json()["status"] != "running":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        time.sleep(1.0)
        assert requests.get(f"{base}/api/jobs/{job_id}", timeout=10).json()["status"] == "running"
    finally:
        server.stop(kill=True)  # SIGKILL: no chance to clean up

    restarted = start_server(home)
    try:
        base = restarted.base_url
        job = requests.get(f"{base}/api/jobs/{job_id}", timeout=10).json()
        assert job["status"] == "failed"
        assert "interrupted" in job["error"]
        assert job["finished_at"] is not None
        # The KB is usable: the interrupted writer's lock and staged rows are gone.
        files = [("files", ("after.txt", io.BytesIO(b"After the restart the lighthouse was repainted white.")))]
        again = requests.post(f"{base}/api/kbs/big/documents", files=files, timeout=60).json()["job_id"]
        assert wait_for_job(base, again)["status"] == "succeeded"
        hits = requests.post(f"{base}/api/kbs/big/search", json={"query": "lighthouse repainted", "top_k": 1},
                             timeout=60).json()["hits"]
        assert hits[0]["source"] == "after.txt"
    finally:
        restarted.stop()

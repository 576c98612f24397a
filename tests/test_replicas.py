"""Two real `rag serve` replicas on one PostgreSQL catalog and one `milvus-lite server`: an upload through
one is searchable through the other within 2 s, a sync submitted to both runs once, and the job of a
replica killed with SIGKILL is taken over by the other within the heartbeat timeout.

The measured times are printed (``pytest -s``) and asserted against the targets."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests

from rag.jobs import ABANDONED_AFTER_S, HEARTBEAT_S
from tests.api_server import RunningServer, free_port, start_server, wait_for_job
from tests.postgres_server import PostgresServer, postgres  # noqa: F401  (fixture)

# Three servers start in the module's fixture: minutes on a loaded machine, under a minute on a quiet one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@dataclass
class Replicas:
    a: RunningServer
    b: RunningServer
    catalog_url: str
    shares: Path


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError("milvus-lite server did not listen")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Replicas]:  # noqa: F811
    root = tmp_path_factory.mktemp("replicas")
    shares = root / "shares"
    shares.mkdir()
    port = free_port()
    milvus_log = (root / "milvus.log").open("wb")
    milvus = subprocess.Popen([str(Path(sys.executable).with_name("milvus-lite")), "server", "--data-dir",
                               str(root / "milvus"), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=milvus_log, stderr=subprocess.STDOUT)
    servers: list[RunningServer] = []
    try:
        _wait_port(port, milvus)
        url = postgres.create_database()
        env = {"RAG_CATALOG_URL": url, "RAG_STORE__BACKEND": "milvus",
               "RAG_STORE__MILVUS_URI": f"http://127.0.0.1:{port}",
               "RAG_SERVER__SYNC_ROOTS": json.dumps([str(shares)])}
        for name in ("a", "b"):
            servers.append(start_server(root / name, env=env, timeout=400))
        for server in servers:
            server.wait_ready(timeout=600)
        yield Replicas(servers[0], servers[1], url, shares)
    finally:
        for server in servers:
            server.stop()
        milvus.terminate()
        milvus.wait(timeout=60)
        milvus_log.close()


def _sources(server: RunningServer, kb: str, query: str) -> list[str]:
    response = requests.post(f"{server.base_url}/api/kbs/{kb}/search", json={"query": query, "top_k": 5}, timeout=60)
    assert response.status_code == 200, response.text
    return [hit["source"] for hit in response.json()["hits"]]


def _owner(url: str, job_id: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT owner FROM jobs WHERE job_id=%s", (job_id,)).fetchone()
    return row[0] if row else None


def _pid_of(owner: str | None) -> int | None:
    parts = (owner or "").split(":")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


def test_an_upload_through_one_replica_is_searchable_through_the_other(replicas: Replicas) -> None:
    assert requests.post(f"{replicas.a.base_url}/api/kbs", json={"name": "shared"}, timeout=60).status_code == 201
    assert "shared" in [kb["name"] for kb in requests.get(f"{replicas.b.base_url}/api/kbs", timeout=60).json()["kbs"]]
    files = [("files", ("lanterns.md", b"# Lanterns\n\nThe blue lantern festival is held every October in Pingxi.",
                        "text/markdown"))]
    response = requests.post(f"{replicas.a.base_url}/api/kbs/shared/documents", params={"wait": "true"},
                             files=files, timeout=600)
    assert response.status_code == 201, response.text
    committed = time.monotonic()
    while "lanterns.md" not in _sources(replicas.b, "shared", "blue lantern festival October"):
        assert time.monotonic() - committed < 30, "never searchable through the other replica"
        time.sleep(0.05)
    elapsed = time.monotonic() - committed
    print(f"\nupload through A searchable through B after {elapsed:.2f} s")
    assert elapsed < 2.0


def test_a_sync_submitted_to_both_replicas_runs_once(replicas: Replicas) -> None:
    folder = replicas.shares / "once"
    for i in range(20):
        (folder / f"note-{i}.md").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"note-{i}.md").write_text(f"# Note {i}\n\nReplica note number {i} about tea gardens.\n")
    assert requests.post(f"{replicas.a.base_url}/api/kbs", json={"name": "once"}, timeout=60).status_code == 201
    answers: dict[str, requests.Response] = {}
    barrier = threading.Barrier(2)

    def submit(name: str, server: RunningServer) -> None:
        barrier.wait()
        answers[name] = requests.post(f"{server.base_url}/api/kbs/once/sync", json={"source": str(folder)}, timeout=60)

    threads = [threading.Thread(target=submit, args=item) for item in (("a", replicas.a), ("b", replicas.b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answer.status_code == 202 for answer in answers.values()), {k: v.text for k, v in answers.items()}
    jobs = [wait_for_job(replicas.a.base_url, answer.json()["job_id"], timeout=900) for answer in answers.values()]
    assert sorted(job["status"] for job in jobs) == ["skipped", "succeeded"], jobs
    [ran] = [job for job in jobs if job["status"] == "succeeded"]
    assert ran["result"]["added"] == 20  # type: ignore[index]


def test_the_job_of_a_killed_replica_is_taken_over_within_the_heartbeat_timeout(replicas: Replicas) -> None:
    folder = replicas.shares / "takeover"
    for i in range(300):
        (folder / f"page-{i}.md").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"page-{i}.md").write_text(f"# Page {i}\n\n" + f"Page {i} of the long handbook on rivers. " * 40)
    assert requests.post(f"{replicas.a.base_url}/api/kbs", json={"name": "takeover"}, timeout=60).status_code == 201
    response = requests.post(f"{replicas.a.base_url}/api/kbs/takeover/sync", json={"source": str(folder)}, timeout=60)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 600
    while True:  # kill A once it is running the job and has done part of it
        job = requests.get(f"{replicas.b.base_url}/api/jobs/{job_id}", timeout=30).json()
        if job["status"] == "running" and job["progress"]["done"] > 0:
            break
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.2)
    owner = _owner(replicas.catalog_url, job_id)
    assert _pid_of(owner) == replicas.a.process.pid
    replicas.a.stop(kill=True)
    killed = time.monotonic()
    while _owner(replicas.catalog_url, job_id) == owner:
        assert time.monotonic() - killed < ABANDONED_AFTER_S + 3 * HEARTBEAT_S + 60, "never taken over"
        time.sleep(0.5)
    taken = time.monotonic() - killed
    assert _pid_of(_owner(replicas.catalog_url, job_id)) == replicas.b.process.pid
    job = wait_for_job(replicas.b.base_url, job_id, timeout=1200)
    finished = time.monotonic() - killed
    print(f"\nkill -9 of A: B took the job over after {taken:.1f} s, finished it {finished:.1f} s after the kill "
          f"(heartbeat {HEARTBEAT_S:g} s, abandoned after {ABANDONED_AFTER_S:g} s): {job['status']}")
    assert job["status"] == "succeeded", job
    assert taken <= ABANDONED_AFTER_S + 2 * HEARTBEAT_S
    assert "page-7.md" in _sources(replicas.b, "takeover", "Page 7 of the long handbook on rivers")

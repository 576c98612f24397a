"""Jobs shared by processes on one catalog (the server and `rag scheduler`): a live runner's jobs are left
alone, a dead one's are failed, at once on this host and by a stale heartbeat from elsewhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rag.jobs import JobRunner
from rag.store.catalog import Catalog
from rag.store.jobs import JobRecord, JobStore

CHILD = """
import pathlib, sys, time
from rag.jobs import JobRunner
from rag.store.catalog import Catalog

runner = JobRunner(Catalog(pathlib.Path(sys.argv[1])), heartbeat_s=0.2)
gate = pathlib.Path(sys.argv[2])

def work(progress):
    while not gate.exists():
        time.sleep(0.05)
    return {"finished": True}

job_id = runner.submit("sync", "handbook", work)
print(job_id, flush=True)
while runner.get(job_id)["status"] in ("queued", "running"):
    time.sleep(0.05)
"""


def _start_child(db: Path, gate: Path) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(gate)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def _wait_for_status(catalog: Catalog, job_id: str, wanted: str, timeout_s: float = 20.0) -> JobRecord:
    store = JobStore(catalog)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job and job.status == wanted:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is {store.get(job_id)}, not {wanted}")


def test_a_starting_server_leaves_a_live_scheduler_process_job_running(tmp_path: Path) -> None:
    db, gate = tmp_path / "catalog.db", tmp_path / "gate"
    child, job_id = _start_child(db, gate)
    try:
        catalog = Catalog(db)
        _wait_for_status(catalog, job_id, "running")
        server = JobRunner(catalog)
        assert server.recover_interrupted() == 0
        assert server.record(job_id).status == "running"
        gate.touch()
        assert _wait_for_status(catalog, job_id, "succeeded").result == {"finished": True}
        assert child.wait(timeout=20) == 0
        server.shutdown()
    finally:
        child.kill()


def test_the_job_of_a_killed_process_on_this_host_is_failed_at_once(tmp_path: Path) -> None:
    db, gate = tmp_path / "catalog.db", tmp_path / "gate"
    child, job_id = _start_child(db, gate)
    catalog = Catalog(db)
    _wait_for_status(catalog, job_id, "running")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=20)
    server = JobRunner(catalog)  # heartbeat still fresh: only the dead PID tells
    assert server.recover_interrupted() == 1
    job = server.record(job_id)
    assert job.status == "failed" and job.error is not None and "interrupted" in job.error
    server.shutdown()


def test_a_runner_elsewhere_is_failed_only_once_its_heartbeat_goes_stale(tmp_path: Path) -> None:
    store = JobStore(Catalog(tmp_path / "catalog.db"))
    store.create("elsewhere-live", "sync", "kb", owner="other-host:4242:aaaa")
    store.create("elsewhere-dead", "sync", "kb", owner="other-host:4343:bbbb")
    runner = JobRunner(store.catalog, heartbeat_s=0.1, abandoned_after_s=1.0)
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # the live one keeps beating; the dead one has stopped
            store.beat("other-host:4242:aaaa")
            time.sleep(0.1)
        # No restart needed: the heartbeat thread found the dead one.
        assert runner.record("elsewhere-dead").status == "failed"
        assert runner.record("elsewhere-live").status == "queued"
    finally:
        runner.shutdown()


def test_a_catalog_from_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE kbs (name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',"
                   " generation INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL)")
        db.execute("CREATE TABLE documents (kb TEXT NOT NULL REFERENCES kbs(name) ON DELETE CASCADE,"
                   " doc_id TEXT NOT NULL, source TEXT NOT NULL, path TEXT, format TEXT NOT NULL DEFAULT '',"
                   " content_hash TEXT, size INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL, error TEXT,"
                   " chunks INTEGER NOT NULL DEFAULT 0, title TEXT, updated_at REAL NOT NULL, PRIMARY KEY (kb, doc_id))")
        db.execute("INSERT INTO kbs(name, created_at) VALUES ('handbook', 0)")
        db.execute("INSERT INTO documents(kb, doc_id, source, status, updated_at) VALUES"
                   " ('handbook', 'd1', 'leave.md', 'indexed', 0)")
        db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, kb TEXT, kind TEXT NOT NULL, status TEXT NOT NULL,"
                   " done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT,"
                   " created_at REAL NOT NULL, started_at REAL, finished_at REAL)")
        db.execute("INSERT INTO jobs(job_id, kind, status, created_at) VALUES ('old', 'sync', 'running', 0)")
    catalog = Catalog(path)
    assert [(doc.source, doc.note) for doc in catalog.documents("handbook")] == [("leave.md", None)]
    runner = JobRunner(catalog)
    assert runner.recover_interrupted() == 1  # no owner, no heartbeat: left by a version that did not record them
    assert runner.record("old").status == "failed"
    runner.shutdown()

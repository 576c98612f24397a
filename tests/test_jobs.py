"""Jobs shared by processes on one catalog (the server and `rag scheduler`): a live runner's jobs are left
alone, a dead one's are failed, at once on this host and by a stale heartbeat from elsewhere."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rag.errors import JobNotFound, RagError
from rag.jobs import JobFinished, JobFunction, JobRunner, Progress
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


# -- lanes, cancel, resume (in one process, real catalog) -------------------------------------------------
def _blocked_until(gate: threading.Event, ran: list[str], name: str) -> JobFunction:
    def work(progress: Progress) -> dict[str, Any]:
        assert gate.wait(20)
        ran.append(name)
        return {"name": name}
    return work


def _steps(count: int, ran: list[int], pause_s: float = 0.01) -> JobFunction:
    def work(progress: Progress) -> dict[str, Any]:
        for step in range(count):
            time.sleep(pause_s)
            ran.append(step)
            progress(step + 1, count, f"file-{step}")
        return {"steps": count}
    return work


def _wait(runner: JobRunner, job_id: str, *statuses: str, timeout_s: float = 20.0) -> JobRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = runner.record(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} is {runner.record(job_id)}, not {statuses}")


def test_each_kb_has_its_own_lane(tmp_path: Path) -> None:
    runner = JobRunner(Catalog(tmp_path / "catalog.db"))
    gate, ran = threading.Event(), []
    try:
        blocked = runner.submit("ingest", "a", _blocked_until(gate, ran, "a1"))
        behind = runner.submit("ingest", "a", _blocked_until(gate, ran, "a2"))
        other = runner.submit("ingest", "b", _steps(3, []))
        assert _wait(runner, other, "succeeded").result == {"steps": 3}  # b never waits for a
        assert runner.record(blocked).status == "running" and runner.record(behind).status == "queued"
        gate.set()
        _wait(runner, behind, "succeeded")
        assert ran == ["a1", "a2"]  # one KB's jobs run in order, one at a time
    finally:
        gate.set()
        runner.shutdown(wait=True)


def test_cancel_stops_a_running_job_at_its_next_step_and_a_queued_one_at_once(tmp_path: Path) -> None:
    runner = JobRunner(Catalog(tmp_path / "catalog.db"))
    steps: list[int] = []
    try:
        running = runner.submit("ingest", "kb", _steps(1000, steps))
        queued_ran: list[int] = []
        queued = runner.submit("ingest", "kb", _steps(5, queued_ran))
        _wait(runner, running, "running")
        while len(steps) < 5:
            time.sleep(0.01)
        assert runner.cancel(queued)["status"] == "cancelled"
        runner.cancel(running)
        stopped = _wait(runner, running, "cancelled")
        assert stopped.error is not None and "cancelled after" in stopped.error
        assert stopped.done < 1000 and len(steps) <= stopped.done + 1
        time.sleep(0.1)
        assert queued_ran == []  # the cancelled queued job never ran
        with pytest.raises(JobFinished):
            runner.cancel(running)
        with pytest.raises(JobNotFound):
            runner.cancel("nope")
    finally:
        runner.shutdown(wait=True)


def test_a_job_whose_row_is_gone_stops(tmp_path: Path) -> None:
    """Deleting a KB deletes its job rows; the runner (in any process) takes that as a cancel."""
    runner = JobRunner(Catalog(tmp_path / "catalog.db"))
    steps: list[int] = []
    try:
        job_id = runner.submit("ingest", "doomed", _steps(1000, steps))
        while len(steps) < 3:
            time.sleep(0.01)
        assert runner.store.forget_kb("doomed") == [job_id]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(steps) < 1000:
            count = len(steps)
            time.sleep(0.2)
            if len(steps) == count:
                break
        assert len(steps) < 1000
        with pytest.raises(JobNotFound):
            runner.record(job_id)
    finally:
        runner.shutdown(wait=True)


def _dead_owner() -> str:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{socket.gethostname()}:{done.stdout.strip()}:dead0000"


def test_an_abandoned_job_with_a_payload_is_resumed_by_a_runner_that_knows_its_kind(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    store = JobStore(catalog)
    store.create("resumable", "ingest", "kb", total=3, owner=_dead_owner(), payload={"files": [["/u/a", "a"]]})
    store.update("resumable", status="running", done=1)
    store.create("plain", "ingest", "kb", owner=_dead_owner())
    store.create("other-kind", "export", "kb", owner=_dead_owner(), payload={"x": 1})

    scheduler_like = JobRunner(catalog)  # no resumers: fails only what cannot be resumed anywhere
    assert scheduler_like.recover_interrupted() == 1
    assert store.get("plain").status == "failed"  # type: ignore[union-attr]
    assert store.get("resumable").status == "running"  # type: ignore[union-attr]
    scheduler_like.shutdown()

    runner = JobRunner(catalog)
    seen: list[dict[str, Any]] = []

    def resume(job: JobRecord) -> JobFunction:
        seen.append(job.payload or {})
        return lambda progress: {"resumed": job.job_id}

    runner.register_resumer("ingest", resume)
    try:
        assert runner.recover_interrupted() == 0
        assert _wait(runner, "resumable", "succeeded").result == {"resumed": "resumable"}
        assert seen == [{"files": [["/u/a", "a"]]}]
        assert store.get("resumable").owner == runner.owner  # type: ignore[union-attr]
        assert store.get("other-kind").status == "queued"  # type: ignore[union-attr]  # left for a runner that knows it
        assert runner.recover_interrupted() == 0 and len(seen) == 1  # claimed once
    finally:
        runner.shutdown(wait=True)


def test_a_shutdown_without_waiting_leaves_the_running_job_to_be_resumed(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    runner = JobRunner(catalog)
    steps: list[int] = []
    job_id = runner.submit("ingest", "kb", _steps(1000, steps), payload={"files": []})
    while len(steps) < 3:
        time.sleep(0.01)
    runner.shutdown(wait=False)
    time.sleep(0.3)
    assert len(steps) < 1000
    assert JobStore(catalog).get(job_id).status == "running"  # type: ignore[union-attr]
    again = JobRunner(catalog)
    again.register_resumer("ingest", lambda job: _steps(2, []))
    try:
        again.recover_interrupted()
        assert _wait(again, job_id, "succeeded").result == {"steps": 2}
    finally:
        again.shutdown(wait=True)


def test_the_documents_tab_cancels_the_running_job(service: Any) -> None:
    from webui.documents_tab import DocumentViews

    service.create_kb("ui")
    runner = JobRunner(service.catalog)
    steps: list[int] = []
    try:
        job_id = runner.submit("ingest", "ui", _steps(1000, steps))
        _wait(runner, job_id, "running")
        views = DocumentViews(service, runner)
        assert job_id in views.cancel_job("ui", "en")
        assert _wait(runner, job_id, "cancelled").status == "cancelled"
        with pytest.raises(RagError):
            views.cancel_job("ui", "en")  # nothing left to cancel
    finally:
        runner.shutdown(wait=True)


def test_a_job_cancelled_while_its_process_was_down_ends_cancelled_not_resumed(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    store = JobStore(catalog)
    store.create("orphan", "ingest", "kb", owner=_dead_owner(), payload={"files": []})
    store.update("orphan", status="running")
    store.request_cancel("orphan")  # e.g. POST .../cancel answered by another server process
    runner = JobRunner(catalog)
    runner.register_resumer("ingest", lambda job: _steps(2, []))
    try:
        runner.recover_interrupted()
        job = runner.record("orphan")
        assert job.status == "cancelled" and job.finished_at is not None
    finally:
        runner.shutdown(wait=True)


def test_rag_gc_keeps_the_stored_uploads_of_an_unfinished_job_until_it_ends(service: Any) -> None:
    import io

    from rag.gc import collect

    service.create_kb("gckb")
    [(path, _source)] = service.store_uploads("gckb", [("queued.txt", io.BytesIO(b"an upload waiting for its job"))])
    service.job_store.create("waiting", "ingest", "gckb", payload={"files": [[str(path), "queued.txt"]]})
    much_later = time.time() + 30 * 24 * 3600  # past every grace period
    collect(service.catalog, service.settings, now=much_later)
    assert path.exists()  # its job has not run yet
    service.job_store.finish("waiting", "cancelled", error="cancelled before it started")
    report = collect(service.catalog, service.settings, now=much_later)
    assert not path.exists() and report.upload_files_removed == 1  # no job and no document names it now

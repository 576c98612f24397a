"""Folder sync: exact reports, deletions gone from search, readers undisturbed by writers, schedules."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.config import SyncSource, load_settings
from rag.errors import ConfigError
from rag.jobs import JobRunner
from rag.scheduler import SyncScheduler
from rag.service import RagService

RAG = str(Path(sys.executable).with_name("rag"))

TOPICS = ["harbor", "lantern", "orchard", "meadow", "canyon", "glacier", "violin", "compass"]


def note(i: int, revision: int = 0) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return (f"Field note {i} (revision {revision}) about the {topic}. The {topic} survey found {i * 3 + revision} "
            f"markers near station {i}, and the team logged them in the {topic} register as code{i}x{revision}.\n")


def write_notes(folder: Path, count: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (folder / f"note-{i:03d}.txt").write_text(note(i), encoding="utf-8")


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., RagService]]:
    made: list[RagService] = []

    def make(**overrides: Any) -> RagService:
        svc = RagService(load_settings(home=tmp_path / "home", **overrides))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.catalog.close()


def visible_chunk_problems(catalog_path: Path, kb: str) -> list[str]:
    """Reads the chunks table directly: duplicates, orphans and count mismatches at the committed generation."""
    db = sqlite3.connect(catalog_path)
    try:
        generation = db.execute("SELECT generation FROM kbs WHERE name=?", (kb,)).fetchone()[0]
        visible = "kb=? AND added_gen<=? AND (deleted_gen IS NULL OR deleted_gen>?)"
        problems = [f"duplicate chunk {row}" for row in db.execute(
            f"SELECT doc_id, ordinal, COUNT(*) FROM chunks WHERE {visible} GROUP BY doc_id, ordinal HAVING COUNT(*)>1",
            (kb, generation, generation))]
        problems += [f"chunk of unknown document {row[0]}" for row in db.execute(
            f"SELECT DISTINCT doc_id FROM chunks WHERE {visible} AND doc_id NOT IN "
            "(SELECT doc_id FROM documents WHERE kb=? AND status='indexed')", (kb, generation, generation, kb))]
        problems += [f"document {row[0]} lists {row[1]} chunks but {row[2]} are visible" for row in db.execute(
            f"SELECT d.doc_id, d.chunks, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id=d.doc_id AND c.{visible}) "
            "FROM documents d WHERE d.kb=? AND d.status='indexed'", (kb, generation, generation, kb))
            if row[1] != row[2]]
        return problems
    finally:
        db.close()


# -- counts, deletions, work in proportion to changes -------------------------------------------------------
def test_sync_reports_exact_counts_and_parses_only_changed_files(
    make_service: Callable[..., RagService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.indexing

    folder = tmp_path / "docs"
    write_notes(folder, 4)
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.md").write_text("# Deep\n\nThe deep note mentions the violin workshop.\n", "utf-8")
    svc = make_service()
    svc.create_kb("team")
    first = svc.sync("team", folder)
    assert (first.added, first.updated, first.unchanged, first.deleted, first.failed) == (5, 0, 0, 0, [])

    parsed: list[str] = []
    real_load = rag.indexing.load_document

    def spy_load(path: Path, source: str, *args: Any, **kwargs: Any) -> Any:
        parsed.append(source)
        return real_load(path, source, *args, **kwargs)

    monkeypatch.setattr(rag.indexing, "load_document", spy_load)
    embedder = svc.router.embedder(svc.router.english)
    embedded: list[str] = []
    real_embed = embedder.embed_documents

    def spy_embed(texts: list[str]) -> Any:
        embedded.extend(texts)
        return real_embed(texts)

    monkeypatch.setattr(embedder, "embed_documents", spy_embed)

    generation = svc.catalog.generation("team")
    again = svc.sync("team", folder)
    assert (again.added, again.updated, again.unchanged, again.deleted) == (0, 0, 5, 0)
    assert parsed == [] and embedded == []
    assert svc.catalog.generation("team") == generation  # nothing changed: no new generation either

    (folder / "note-001.txt").write_text(note(1, revision=2), encoding="utf-8")  # content changed
    os.utime(folder / "note-002.txt", (time.time() + 60, time.time() + 60))  # only the mtime changed
    (folder / "note-003.txt").unlink()
    (folder / "note-010.txt").write_text(note(10), encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    report = svc.sync("team", folder)

    assert (report.added, report.updated, report.unchanged, report.deleted) == (1, 1, 3, 1)
    assert report.failed == [{"path": "empty.txt", "error": "file is empty"}]
    assert sorted(parsed) == ["empty.txt", "note-001.txt", "note-010.txt"]
    assert len(embedded) == report.chunks == 2  # one chunk each for the changed and the new note
    assert svc.get_kb("team").documents == 5
    statuses = {doc.source: doc.status for doc in svc.list_documents("team")}
    assert statuses == {"empty.txt": "failed", "note-000.txt": "indexed", "note-001.txt": "indexed",
                        "note-002.txt": "indexed", "note-010.txt": "indexed", "sub/deep.md": "indexed"}
    assert visible_chunk_problems(svc.settings.catalog_path, "team") == []


def test_document_deleted_from_folder_is_gone_from_search(
    make_service: Callable[..., RagService], tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    write_notes(folder, 2)
    (folder / "aurora.txt").write_text("The aurora observatory in Tromso opens its dome at midnight.\n", "utf-8")
    svc = make_service()
    svc.create_kb("kb1")
    svc.sync("kb1", folder)
    assert svc.search("kb1", "aurora observatory dome", top_k=1)[0].source == "aurora.txt"

    (folder / "aurora.txt").unlink()
    report = svc.sync("kb1", folder)

    assert report.deleted == 1 and report.unchanged == 2
    for mode in ("hybrid", "bm25", "dense"):
        hits = svc.search("kb1", "aurora observatory dome", top_k=10, mode=mode)  # type: ignore[arg-type]
        assert "aurora.txt" not in {hit.source for hit in hits}, mode
    fresh_reader = make_service()  # a new process's view: what is on disk, not this service's cache
    assert "aurora.txt" not in {hit.source for hit in fresh_reader.search("kb1", "aurora observatory", top_k=10)}
    assert [doc.source for doc in svc.list_documents("kb1")] == ["note-000.txt", "note-001.txt"]


# -- readers during writes ---------------------------------------------------------------------------------
class QueryLoop:
    """Threads that search until stopped, recording every failure and the generations they saw."""

    def __init__(self, svc: RagService, kb: str, threads: int = 3) -> None:
        self.svc, self.kb = svc, kb
        self.failures: list[str] = []
        self.queries = 0
        self.generations: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(TOPICS[i],)) for i in range(threads)]

    def _loop(self, topic: str) -> None:
        while not self._stop.is_set():
            try:
                hits = self.svc.search(self.kb, f"{topic} survey markers", top_k=5)
                generation = self.svc.index.reader(self.kb).generation
                if not hits:
                    raise AssertionError(f"no hits at generation {generation}")
            except Exception as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self.queries += 1
                self.generations.add(generation)

    def __enter__(self) -> QueryLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_queries_never_fail_during_a_sync_in_the_same_process(
    make_service: Callable[..., RagService], tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    write_notes(folder, 8)
    svc = make_service(ingest={"commit_seconds": 0.05, "embed_batch_chunks": 4})
    svc.create_kb("live")
    svc.sync("live", folder)
    start_generation = svc.catalog.generation("live")
    write_notes(folder, 16, start=8)
    (folder / "note-000.txt").unlink()

    with QueryLoop(svc, "live") as loop:
        report = svc.sync("live", folder)

    assert loop.failures == []
    assert loop.queries > 0
    assert report.added == 16 and report.deleted == 1
    assert svc.catalog.generation("live") > start_generation + 1  # the sync published several batches
    assert svc.get_kb("live").documents == 23
    assert visible_chunk_problems(svc.settings.catalog_path, "live") == []


def test_queries_never_fail_during_a_sync_in_another_process(
    make_service: Callable[..., RagService], tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    write_notes(folder, 6)
    svc = make_service()
    svc.create_kb("shared")
    svc.sync("shared", folder)
    before = svc.catalog.generation("shared")
    write_notes(folder, 16, start=6)
    env = {**os.environ, "RAG_HOME": str(svc.settings.home), "RAG_INGEST__COMMIT_SECONDS": "0.2",
           "RAG_INGEST__EMBED_BATCH_CHUNKS": "4"}

    with QueryLoop(svc, "shared") as loop:
        done = subprocess.run([RAG, "sync", "--kb", "shared", str(folder), "--json"], env=env,
                              capture_output=True, text=True, timeout=300)
        time.sleep(0.5)  # let the loop run against the final generation too

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 16
    assert loop.failures == []
    assert svc.catalog.generation("shared") > before
    # This process noticed the other one's commits and switched to the newest.
    assert max(loop.generations) == svc.catalog.generation("shared")
    assert svc.search("shared", "code21x0", top_k=3, mode="bm25")[0].source == "note-021.txt"


# -- schedules ---------------------------------------------------------------------------------------------
def wait_for_job(svc: RagService, kb: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in reversed(svc.list_jobs(kb, limit=500)):  # oldest first; skipped runs pile up under load
            if done(job):
                return job
        time.sleep(0.1)
    raise AssertionError(f"no matching job for '{kb}' within {timeout}s: {svc.list_jobs(kb, limit=50)}")


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in {"succeeded", "failed", "skipped"}


def test_schedule_fires_creates_the_kb_and_records_each_run(
    make_service: Callable[..., RagService], tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    write_notes(folder, 2)
    svc = make_service()
    jobs = JobRunner(svc.catalog)
    scheduler = SyncScheduler(svc, jobs, [SyncSource(kb="nightly", folder=folder, interval_seconds=1)])
    scheduler.start()
    try:
        first = wait_for_job(svc, "nightly", lambda job: job["status"] == "succeeded")
        (folder / "note-005.txt").write_text(note(5), encoding="utf-8")
        later = wait_for_job(svc, "nightly", lambda job: job["status"] == "succeeded"
                             and job["created_at"] > first["finished_at"] and job["result"]["added"] == 1)
    finally:
        scheduler.shutdown()
        jobs.shutdown(wait=True)

    assert svc.get_kb("nightly").description == f"synced from {folder}"
    assert first["kind"] == "sync"
    assert {k: first["result"][k] for k in ("added", "updated", "deleted", "unchanged", "failed")} == \
        {"added": 2, "updated": 0, "deleted": 0, "unchanged": 0, "failed": []}
    assert (later["result"]["unchanged"], later["result"]["deleted"]) == (2, 0)
    assert svc.get_kb("nightly").documents == 3


def test_overlapping_runs_are_skipped_not_stacked(make_service: Callable[..., RagService], tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    write_notes(folder, 3)
    svc = make_service()
    jobs = JobRunner(svc.catalog)
    source = SyncSource(kb="busy", folder=folder, cron="0 3 * * *")
    scheduler = SyncScheduler(svc, jobs, [source])

    # In this process: a second run while the first is active is recorded as skipped.
    running, second = scheduler.run_now(source), scheduler.run_now(source)
    assert jobs.get(second)["status"] == "skipped"
    assert "already running" in jobs.get(second)["error"]
    assert wait_for_job(svc, "busy", lambda job: job["job_id"] == running and finished(job))["status"] == "succeeded"

    # Another process holds the KB's writer lock: the run does not wait behind it, it is skipped.
    lock_path = svc.kb_dir("busy") / "write.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
         "lock.acquire(); print('held', flush=True); sys.stdin.read()", str(lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        blocked = scheduler.run_now(source)
        job = wait_for_job(svc, "busy", lambda job: job["job_id"] == blocked and finished(job), timeout=30)
    finally:
        holder.communicate("")
        jobs.shutdown(wait=True)
    assert job["status"] == "skipped"
    assert "being written by another sync or ingest" in job["error"]


def test_cron_schedules_use_crontab_syntax_and_bad_entries_name_the_field(
    make_service: Callable[..., RagService], tmp_path: Path
) -> None:
    svc = make_service()
    jobs = JobRunner(svc.catalog)
    scheduler = SyncScheduler(svc, jobs, [SyncSource(kb="handbook", folder=tmp_path, cron="30 2 * * *")])
    scheduler.start()
    try:
        (next_run,) = scheduler.next_runs().values()
    finally:
        scheduler.shutdown()
        jobs.shutdown()
    assert (next_run.hour, next_run.minute, next_run.second) == (2, 30, 0)

    with pytest.raises(ConfigError, match=r"sources\[1\]\.cron: invalid crontab expression '61 \* \* \* \*'"):
        SyncScheduler(svc, jobs, [SyncSource(kb="a", folder=tmp_path, cron="0 2 * * *"),
                                  SyncSource(kb="b", folder=tmp_path, cron="61 * * * *")])
    with pytest.raises(ConfigError, match=r"sources\[0\]\.kb: invalid knowledge base name 'no/slash'"):
        SyncScheduler(svc, jobs, [SyncSource(kb="no/slash", folder=tmp_path, interval_seconds=5)])
    with pytest.raises(ConfigError, match="exactly one of `cron` and `interval_seconds`"):
        load_settings(home=tmp_path / "h", sources=[{"kb": "x", "folder": str(tmp_path)}])


def test_rag_scheduler_command_runs_configured_syncs_until_terminated(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    write_notes(folder, 2)
    home = tmp_path / "home"
    config = tmp_path / "rag.yaml"
    config.write_text(f"sources:\n  - kb: wiki\n    folder: {folder}\n    interval_seconds: 1\n", encoding="utf-8")
    env = {**os.environ, "RAG_HOME": str(home), "RAG_CONFIG": str(config)}
    proc = subprocess.Popen([RAG, "scheduler"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        job = None
        while job is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if (home / "catalog.sqlite").exists():
                db = sqlite3.connect(home / "catalog.sqlite")
                try:
                    row = db.execute("SELECT status, result FROM jobs WHERE kb='wiki' AND status='succeeded'")
                    job = row.fetchone()
                except sqlite3.OperationalError:
                    pass  # the scheduler is still creating the schema
                finally:
                    db.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert job is not None, stderr
    assert json.loads(job[1])["added"] == 2
    assert proc.returncode == 0, stderr
    assert "scheduled sync of" in stderr


def test_rag_scheduler_without_sources_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_HOME": str(tmp_path / "home")}
    env.pop("RAG_CONFIG", None)
    done = subprocess.run([RAG, "scheduler"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: no sync sources configured")
    assert "Traceback" not in done.stderr

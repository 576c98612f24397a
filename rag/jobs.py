"""Background jobs (ingest, sync): run in one lane per KB, recorded in the catalog so they survive restarts.

Lanes: each KB's jobs run one after another on that KB's own thread, so a job waiting for a KB's writer
never holds a worker another KB needs: work on KB A never waits for KB B.

Restarts: a job submitted with a ``payload`` (what it needs to run again, e.g. the stored upload files) and
a ``kind`` this runner has a resumer for is taken over and re-run when the process that ran it is gone.
Content hashes make the re-run skip what the first run already committed, so nothing is duplicated.
A job without a payload (or whose kind no resumer here knows) is failed as interrupted, as before.

Cancelling: ``cancel(job_id)`` (any process: the request is a column in the catalog) stops a queued job at
once and a running one at its next file; what it had committed stays, the rest is rolled back by the writer.
A job whose row is gone (its KB was deleted) stops the same way.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rag.errors import JobNotFound, RagError
from rag.store.catalog import Catalog
from rag.store.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
JobFunction = Callable[[Progress], dict[str, Any]]
# an interrupted job (with its kb and payload) → its work, to run it again after a restart
Resumer = Callable[[JobRecord], JobFunction]


class JobSkipped(RagError):
    """Raised by a job's work when it decides not to run (e.g. another process holds the KB); recorded as skipped."""

    code = "job_skipped"
    http_status = 409


class JobCancelled(RagError):
    """Raised inside a job's work (from its progress callback) when the job was cancelled or its KB deleted."""

    code = "job_cancelled"
    http_status = 409


class JobFinished(RagError):
    """A cancel asked of a job that has already ended."""

    code = "job_finished"
    http_status = 409


class _Interrupted(BaseException):
    """The runner is shutting down without waiting: stop at the next file and leave the job to be resumed."""


# A runner refreshes its unfinished jobs' heartbeat this often; a job whose heartbeat is older than
# ABANDONED_AFTER_S belongs to a process that died (the server and `rag scheduler` share one catalog).
HEARTBEAT_S = 10.0
ABANDONED_AFTER_S = 60.0
INTERRUPTED = "interrupted: the process running it stopped before the job finished"


_LIVE_OWNERS: set[str] = set()  # the runners of this process


def _gone(owner: str | None) -> bool:
    """Whether the runner named ``owner`` ("host:pid:token") is known to be dead."""
    host, _, rest = (owner or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine or container: only its heartbeat can tell
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _LIVE_OWNERS  # not a runner of this process: an earlier life under the same PID
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True, slots=True)
class _Queued:
    job_id: str
    kind: str
    kb: str | None
    work: JobFunction


class JobRunner:
    def __init__(self, catalog: Catalog, heartbeat_s: float = HEARTBEAT_S,
                 abandoned_after_s: float = ABANDONED_AFTER_S) -> None:
        self.store = JobStore(catalog)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _LIVE_OWNERS.add(self.owner)
        self.abandoned_after_s = abandoned_after_s
        self._resumers: dict[str, Resumer] = {}
        self._lanes: dict[str | None, deque[_Queued]] = {}
        self._lane_threads: dict[str | None, threading.Thread] = {}
        self._active: Counter[tuple[str, str | None]] = Counter()  # (kind, kb) of queued and running jobs
        self._cancelled: set[str] = set()  # asked in this process: no catalog read needed to notice
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._interrupt = threading.Event()
        self._heart = threading.Thread(target=self._beat, args=(heartbeat_s,), name="rag-job-heartbeat", daemon=True)
        self._heart.start()

    # -- resuming ------------------------------------------------------------------------------
    def register_resumer(self, kind: str, resumer: Resumer) -> None:
        """Jobs of ``kind`` submitted with a payload are re-run by ``resumer`` after their process died."""
        self._resumers[kind] = resumer

    def recover_interrupted(self) -> int:
        """Resume or fail the jobs that a dead process left queued or running; at start-up and on every beat.

        A job is abandoned when its runner's process is gone from this host (or this very process is a
        restart of it: same host and PID, as in a container), or when its heartbeat is stale. Jobs of a
        live runner elsewhere (a `rag scheduler` process beside the server) keep their status. An abandoned
        job with a payload of a kind no resumer here knows is left for a runner that does (the server).
        Returns the jobs failed; those resumed are logged.
        """
        stale_before = time.time() - self.abandoned_after_s
        abandoned = [job for job in self.store.unfinished()
                     if job.owner != self.owner
                     and (job.heartbeat_at is None or job.heartbeat_at < stale_before or _gone(job.owner))]
        failed: list[str] = []
        for job in abandoned:
            if job.cancel_requested:  # cancelled while its process was down: nothing to resume
                self.store.finish(job.job_id, "cancelled", error="cancelled; its process had stopped")
            elif job.payload is None:
                failed.append(job.job_id)
            elif job.kind in self._resumers and not self._stopped.is_set():
                self._resume(job)
        return self.store.fail_unfinished(failed, INTERRUPTED) if failed else 0

    def _resume(self, job: JobRecord) -> None:
        assert job.payload is not None
        if not self.store.claim(job.job_id, job.owner, self.owner):
            return  # another runner took it first
        try:
            work = self._resumers[job.kind](job)
        except Exception as exc:  # e.g. its KB is gone: the job cannot run again
            self.store.finish(job.job_id, "failed", error=f"{INTERRUPTED}; cannot resume: {exc}")
            return
        log.warning("resuming %s job %s of '%s' interrupted by a stopped process", job.kind, job.job_id, job.kb)
        self._enqueue(_Queued(job.job_id, job.kind, job.kb, work))

    def _beat(self, every_s: float) -> None:
        while not self._stopped.wait(every_s):
            try:
                self.store.beat(self.owner)
                failed = self.recover_interrupted()
                if failed:
                    log.warning("marked %d job(s) of a stopped process as failed", failed)
            except Exception:  # a busy or closed catalog must not end the heartbeat
                log.debug("job heartbeat failed", exc_info=True)

    # -- submitting and running ----------------------------------------------------------------
    def submit(self, kind: str, kb: str | None, work: JobFunction, total: int = 0,
               skip_if_active: bool = False, payload: dict[str, Any] | None = None) -> str:
        """Queue ``work`` in ``kb``'s lane; with ``skip_if_active`` a second job of the same kind and KB
        (queued or running here, or in another process or replica on the same catalog) is recorded as
        skipped. ``payload``: see the module docstring."""
        job_id = uuid.uuid4().hex[:16]
        elsewhere = None
        if skip_if_active:  # the catalog decides, atomically: replicas handed the same sync run it once
            elsewhere = self.store.create_unless_active(job_id, kind, kb, time.time() - self.abandoned_after_s,
                                                        total, owner=self.owner, payload=payload)
        else:
            self.store.create(job_id, kind, kb, total, owner=self.owner, payload=payload)
        if elsewhere is not None:
            return job_id  # recorded as skipped
        with self._lock:
            skipped = skip_if_active and self._active[(kind, kb)] > 0
            if not skipped:
                self._enqueue_locked(_Queued(job_id, kind, kb, work))
        if skipped:
            self.store.finish(job_id, "skipped", error=f"a {kind} of '{kb}' is already running")
        return job_id

    def _enqueue(self, item: _Queued) -> None:
        with self._lock:
            self._enqueue_locked(item)

    def _enqueue_locked(self, item: _Queued) -> None:
        self._active[(item.kind, item.kb)] += 1
        self._lanes.setdefault(item.kb, deque()).append(item)
        if item.kb not in self._lane_threads:
            thread = threading.Thread(target=self._drain, args=(item.kb,), name=f"rag-job-{item.kb}", daemon=True)
            self._lane_threads[item.kb] = thread
            thread.start()

    def _drain(self, kb: str | None) -> None:
        """A KB's lane: run its jobs one after another; the thread ends when the lane is empty."""
        while True:
            with self._lock:
                lane = self._lanes.get(kb)
                if not lane or self._stopped.is_set():
                    self._lanes.pop(kb, None)
                    self._lane_threads.pop(kb, None)
                    return
                item = lane.popleft()
            try:
                self._run(item)
            finally:
                with self._lock:
                    self._active[(item.kind, item.kb)] -= 1
                    self._cancelled.discard(item.job_id)

    def _run(self, item: _Queued) -> None:
        job_id = item.job_id
        if not self.store.start(job_id):  # cancelled while queued, or its KB deleted (its row is gone)
            self.store.finish(job_id, "cancelled", error="cancelled before it started")
            return

        def progress(done: int, total: int, current: str) -> None:
            self.store.update(job_id, done=done, total=total)
            if self._interrupt.is_set():
                raise _Interrupted
            if job_id in self._cancelled or self.store.cancel_requested(job_id):
                raise JobCancelled(f"cancelled after {done} of {total} files; what was committed before stays")

        try:
            result = item.work(progress)
            self.store.finish(job_id, "succeeded", result=result)
        except _Interrupted:
            log.info("job %s stopped by the shutdown; a restart resumes it", job_id)
        except JobCancelled as exc:
            self.store.finish(job_id, "cancelled", error=exc.message)
        except JobSkipped as exc:
            self.store.finish(job_id, "skipped", error=exc.message)
        except Exception as exc:  # a job must end with a reason, never stay "running"
            if self.store.cancel_requested(job_id):  # e.g. the KB vanished under a cancelled job
                self.store.finish(job_id, "cancelled", error="cancelled")
            elif isinstance(exc, RagError):
                self.store.finish(job_id, "failed", error=exc.message)
            else:
                log.error("job %s failed: %s", job_id, traceback.format_exc())
                self.store.finish(job_id, "failed", error=f"{type(exc).__name__}: {exc}")

    # -- cancelling ----------------------------------------------------------------------------
    def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop a queued job now and a running one at its next file (in whichever process runs it)."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"job '{job_id}' does not exist")
        if job.finished:
            raise JobFinished(f"job '{job_id}' has already ended ({job.status})")
        with self._lock:
            self._cancelled.add(job_id)
        after = self.store.request_cancel(job_id)
        return (after or job).to_json()

    # -- reading -------------------------------------------------------------------------------
    def record(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"job '{job_id}' does not exist")
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        """The job as ``GET /api/jobs/{job_id}`` shows it."""
        return self.record(job_id).to_json()

    def list(self, kb: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return [job.to_json() for job in self.store.list(kb, limit)]

    def shutdown(self, wait: bool = False) -> None:
        """Stop starting queued jobs. ``wait``: let the running ones finish; otherwise they stop at their next
        file, keep what they committed, and are resumed (or failed as interrupted) by the next start."""
        self._stopped.set()
        if not wait:
            self._interrupt.set()
        with self._lock:
            threads = list(self._lane_threads.values())
        if wait:
            for thread in threads:
                thread.join()
        _LIVE_OWNERS.discard(self.owner)

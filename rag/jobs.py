"""Background jobs (ingest, sync): run in worker threads, recorded in the catalog so they survive restarts."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rag.errors import JobNotFound, RagError
from rag.store.catalog import Catalog

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
JobFunction = Callable[[Progress], dict[str, Any]]


class JobSkipped(RagError):
    """Raised by a job's work when it decides not to run (e.g. another process holds the KB); recorded as skipped."""

    code = "job_skipped"
    http_status = 409


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


class JobRunner:
    def __init__(self, catalog: Catalog, max_workers: int = 2, heartbeat_s: float = HEARTBEAT_S,
                 abandoned_after_s: float = ABANDONED_AFTER_S) -> None:
        self.catalog = catalog
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _LIVE_OWNERS.add(self.owner)
        self.abandoned_after_s = abandoned_after_s
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rag-job")
        self._active: set[tuple[str, str | None]] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._heart = threading.Thread(target=self._beat, args=(heartbeat_s,), name="rag-job-heartbeat", daemon=True)
        self._heart.start()

    def recover_interrupted(self) -> int:
        """Fail the jobs that a dead process left queued or running; runs at start-up and on every beat.

        A job is abandoned when its runner's process is gone from this host (or this very process is a
        restart of it: same host and PID, as in a container), or when its heartbeat is stale. Jobs of a
        live runner elsewhere (a `rag scheduler` process beside the server) keep their status.
        """
        stale_before = time.time() - self.abandoned_after_s
        abandoned = [job_id for job_id, owner, heartbeat in self.catalog.unfinished_jobs()
                     if owner != self.owner and (heartbeat is None or heartbeat < stale_before or _gone(owner))]
        return self.catalog.fail_unfinished_jobs(abandoned, INTERRUPTED) if abandoned else 0

    def _beat(self, every_s: float) -> None:
        while not self._stopped.wait(every_s):
            try:
                self.catalog.beat_jobs(self.owner)
                failed = self.recover_interrupted()
                if failed:
                    log.warning("marked %d job(s) of a stopped process as failed", failed)
            except Exception:  # a busy or closed catalog must not end the heartbeat
                log.debug("job heartbeat failed", exc_info=True)

    def submit(self, kind: str, kb: str | None, work: JobFunction, total: int = 0,
               skip_if_active: bool = False) -> str:
        """Queue ``work``; with ``skip_if_active`` a second job of the same kind and KB is recorded as skipped."""
        job_id = uuid.uuid4().hex[:16]
        self.catalog.create_job(job_id, kind, kb, total, owner=self.owner)
        key = (kind, kb)
        with self._lock:
            if skip_if_active and key in self._active:
                self.catalog.update_job(job_id, status="skipped", error=f"a {kind} of '{kb}' is already running")
                return job_id
            self._active.add(key)
        self._pool.submit(self._run, job_id, key, work)
        return job_id

    def _run(self, job_id: str, key: tuple[str, str | None], work: JobFunction) -> None:
        self.catalog.update_job(job_id, status="running")

        def progress(done: int, total: int, current: str) -> None:
            self.catalog.update_job(job_id, done=done, total=total)

        try:
            result = work(progress)
            self.catalog.update_job(job_id, status="succeeded", result=result)
        except JobSkipped as exc:
            self.catalog.update_job(job_id, status="skipped", error=exc.message)
        except RagError as exc:
            self.catalog.update_job(job_id, status="failed", error=exc.message)
        except Exception as exc:  # a job must end failed with a reason, never stay "running"
            log.error("job %s failed: %s", job_id, traceback.format_exc())
            self.catalog.update_job(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._active.discard(key)

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.catalog.job(job_id)
        if job is None:
            raise JobNotFound(f"job '{job_id}' does not exist")
        return job

    def list(self, kb: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return self.catalog.jobs(kb, limit)

    def shutdown(self, wait: bool = False) -> None:
        self._stopped.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        _LIVE_OWNERS.discard(self.owner)

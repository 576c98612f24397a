"""Background jobs (ingest, sync): run in worker threads, recorded in the catalog so they survive restarts."""

from __future__ import annotations

import logging
import threading
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


class JobRunner:
    def __init__(self, catalog: Catalog, max_workers: int = 2) -> None:
        self.catalog = catalog
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rag-job")
        self._active: set[tuple[str, str | None]] = set()
        self._lock = threading.Lock()

    def recover_interrupted(self) -> int:
        """Mark jobs left queued/running by a process that died as failed (call once at start-up)."""
        return self.catalog.fail_interrupted_jobs("interrupted: the server stopped before the job finished")

    def submit(self, kind: str, kb: str | None, work: JobFunction, total: int = 0,
               skip_if_active: bool = False) -> str:
        """Queue ``work``; with ``skip_if_active`` a second job of the same kind and KB is recorded as skipped."""
        job_id = uuid.uuid4().hex[:16]
        self.catalog.create_job(job_id, kind, kb, total)
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
        self._pool.shutdown(wait=wait, cancel_futures=True)

"""Scheduled syncs: each entry of ``settings.sources`` mirrors a folder into a KB on a cron (or interval) schedule.

Used two ways: ``SyncScheduler(service, jobs).start()`` inside ``rag serve`` (a background thread), and
``run_scheduler(settings)`` as the standalone ``rag scheduler`` process. Every firing is recorded as a
``sync`` job with the ingest report. A run never stacks on another run of the same KB: in this process
the job runner skips it, and when another process holds the KB's writer lock the run is recorded as skipped.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rag.config import Settings, SyncSource
from rag.errors import ConfigError, KBExists
from rag.jobs import JobRunner, JobSkipped, Progress
from rag.service import RagService, validate_kb_name
from rag.store.staging import WriterBusy

log = logging.getLogger(__name__)

SYNC_JOB_KIND = "sync"


def trigger_for(source: SyncSource, index: int) -> BaseTrigger:
    """The APScheduler trigger of one ``sources`` entry; a bad entry is a ConfigError naming the field."""
    try:
        validate_kb_name(source.kb)
    except Exception as exc:
        raise ConfigError(f"sources[{index}].kb: {exc}") from exc
    if source.interval_seconds is not None:
        return IntervalTrigger(seconds=source.interval_seconds)
    try:
        return CronTrigger.from_crontab(source.cron or "")
    except ValueError as exc:
        raise ConfigError(f"sources[{index}].cron: invalid crontab expression {source.cron!r}: {exc}") from exc


class SyncScheduler:
    """Fires the configured syncs on a background thread; the work runs as jobs of ``jobs``."""

    def __init__(self, service: RagService, jobs: JobRunner, sources: list[SyncSource] | None = None) -> None:
        self.service = service
        self.jobs = jobs
        self.sources = list(service.settings.sources if sources is None else sources)
        # coalesce: runs missed while the process was down or busy collapse into one, never a backlog.
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
        )
        for index, source in enumerate(self.sources):
            self._scheduler.add_job(
                self.run_now, trigger_for(source, index), args=[source], id=f"sync:{index}:{source.kb}",
                name=f"sync {source.folder} -> {source.kb}",
            )

    def start(self) -> None:
        self._scheduler.start()
        for source in self.sources:
            log.info("scheduled sync of %s into '%s' (%s)", source.folder, source.kb,
                     source.cron or f"every {source.interval_seconds:g}s")

    def shutdown(self, wait: bool = False) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def next_runs(self) -> dict[str, Any]:
        """Job id → next fire time (a datetime, or None when paused)."""
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def run_now(self, source: SyncSource) -> str:
        """Queue one sync of ``source`` as a job (skipped if one of that KB is already running); its id."""
        return self.jobs.submit(SYNC_JOB_KIND, source.kb, lambda progress: self._sync(source, progress),
                                skip_if_active=True)

    def _sync(self, source: SyncSource, progress: Progress) -> dict[str, Any]:
        if not self.service.catalog.kb_exists(source.kb):
            with contextlib.suppress(KBExists):  # another process may create it first
                self.service.create_kb(source.kb, f"synced from {source.folder}")
        try:
            report = self.service.sync(source.kb, source.folder, progress=progress, wait=False)
        except WriterBusy as exc:
            raise JobSkipped(f"{exc.message}; this run was skipped") from exc
        log.info("sync of '%s': %d added, %d updated, %d deleted, %d unchanged, %d failed in %.1fs",
                 source.kb, report.added, report.updated, report.deleted, report.unchanged,
                 len(report.failed), report.seconds)
        return report.to_json()


def run_scheduler(settings: Settings) -> None:
    """``rag scheduler``: run the configured syncs until SIGINT or SIGTERM."""
    if not settings.sources:
        raise ConfigError("no sync sources configured: add `sources: [{kb, folder, cron}]` to the RAG_CONFIG file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = RagService(settings)
    jobs = JobRunner(service.catalog)
    scheduler = SyncScheduler(service, jobs)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("stopping: waiting for running syncs to commit")
        scheduler.shutdown(wait=False)
        jobs.shutdown(wait=True)

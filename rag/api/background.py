"""Ingest and sync as background jobs, timed into the metrics, resumable after a restart.

An upload's job records the stored files (and the ingest options) as its payload, a sync's job the folder
and its sync root; ``register_resumers`` teaches the server's job runner to run such a job again when the
process that ran it died (content hashes make the re-run skip what was already committed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.api.audit import audit_job
from rag.api.auth import Principal
from rag.api.state import ApiState
from rag.errors import InvalidInput
from rag.indexing import IngestReport
from rag.jobs import JobCancelled, JobFunction, Progress
from rag.store.jobs import JobRecord

INGEST, SYNC = "ingest", "sync"


def _timed(state: ApiState, kind: str, kb: str, run: Callable[[Progress], IngestReport], key: str,
           job: dict[str, str]) -> JobFunction:
    """``run`` wrapped with the metrics and the audit line written when the job ends."""
    metrics = state.metrics

    def work(progress: Progress) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            report = run(progress)
        except JobCancelled:
            metrics.jobs.labels(kind, "cancelled").inc()
            audit_job(f"{kind}.job", key, kb, job.get("id", "-"), "cancelled")
            raise
        except Exception as exc:
            metrics.jobs.labels(kind, "failed").inc()
            audit_job(f"{kind}.job", key, kb, job.get("id", "-"), "failed", error=type(exc).__name__)
            raise
        metrics.ingest.labels(kind).observe(time.perf_counter() - started)
        metrics.jobs.labels(kind, "succeeded").inc()
        outcomes = {"added": report.added, "updated": report.updated, "unchanged": report.unchanged,
                    "deleted": report.deleted, "failed": len(report.failed)}
        for outcome, count in outcomes.items():
            metrics.ingest_files.labels(outcome).inc(count)
        audit_job(f"{kind}.job", key, kb, job.get("id", "-"), "succeeded", **outcomes)
        return report.to_json()

    return work


def submit_ingest_job(
    state: ApiState,
    kind: str,
    kb: str,
    run: Callable[[Progress], IngestReport],
    total: int = 0,
    skip_if_active: bool = False,
    who: Principal | None = None,
    payload: dict[str, Any] | None = None,
) -> str:
    """``who``: the key that asked, named in the audit line written when the job ends. ``payload``: what a
    resumer of ``kind`` needs to run the job again after a restart (None: an interrupted job fails)."""
    key = who.name if who is not None else "-"
    job: dict[str, str] = {}
    if payload is not None:
        payload = {**payload, "key": key}
    job["id"] = state.jobs.submit(kind, kb, _timed(state, kind, kb, run, key, job), total=total,
                                  skip_if_active=skip_if_active, payload=payload)
    return job["id"]


def _upload_run(state: ApiState, kb: str, stored: list[tuple[Path, str]],
                options: dict[str, Any]) -> Callable[[Progress], IngestReport]:
    return lambda progress: state.service.ingest_files(kb, stored, progress, **options)


def _sync_run(state: ApiState, kb: str, folder: Path, root: Path | None) -> Callable[[Progress], IngestReport]:
    return lambda progress: state.service.sync(kb, folder, progress, root=root)


def submit_upload_job(state: ApiState, kb: str, stored: list[tuple[Path, str]], who: Principal | None = None,
                      **options: Any) -> str:
    """Ingest stored uploads as a job; ``options`` go to ``service.ingest_files`` (JSON values: they are
    kept in the job's payload with the files, so a restart can run the job again)."""
    payload = {"files": [[str(path), source] for path, source in stored], "options": options}
    return submit_ingest_job(state, INGEST, kb, _upload_run(state, kb, stored, options), total=len(stored),
                             who=who, payload=payload)


def submit_sync_job(state: ApiState, kb: str, folder: Path, root: Path | None,
                    who: Principal | None = None) -> str:
    """Mirror ``folder`` (inside sync root ``root``) as a job; skipped while a sync of the KB runs."""
    payload = {"folder": str(folder), "root": str(root) if root is not None else None}
    return submit_ingest_job(state, SYNC, kb, _sync_run(state, kb, folder, root), skip_if_active=True, who=who,
                             payload=payload)


def register_resumers(state: ApiState) -> None:
    """Let ``state.jobs`` re-run interrupted uploads and syncs (call before ``recover_interrupted``)."""

    def checked(job: JobRecord) -> tuple[str, dict[str, Any]]:
        if job.kb is None or job.payload is None:
            raise InvalidInput(f"job '{job.job_id}' names no knowledge base or payload")
        state.service.get_kb(job.kb)  # a deleted KB: the job fails with KBNotFound instead of running
        return job.kb, job.payload

    def resume_upload(job: JobRecord) -> JobFunction:
        kb, payload = checked(job)
        stored = [(Path(path), source) for path, source in payload["files"]]
        return _timed(state, INGEST, kb, _upload_run(state, kb, stored, payload.get("options", {})),
                      payload.get("key", "-"), {"id": job.job_id})

    def resume_sync(job: JobRecord) -> JobFunction:
        kb, payload = checked(job)
        root = Path(payload["root"]) if payload.get("root") else None
        return _timed(state, SYNC, kb, _sync_run(state, kb, Path(payload["folder"]), root),
                      payload.get("key", "-"), {"id": job.job_id})

    state.jobs.register_resumer(INGEST, resume_upload)
    state.jobs.register_resumer(SYNC, resume_sync)

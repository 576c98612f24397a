"""Ingest and sync as background jobs, timed into the metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rag.api.audit import audit_job
from rag.api.auth import Principal
from rag.api.state import ApiState
from rag.indexing import IngestReport
from rag.jobs import Progress


def submit_ingest_job(
    state: ApiState,
    kind: str,
    kb: str,
    run: Callable[[Progress], IngestReport],
    total: int = 0,
    skip_if_active: bool = False,
    who: Principal | None = None,
) -> str:
    """``who``: the key that asked, named in the audit line written when the job ends."""
    metrics = state.metrics
    key = who.name if who is not None else "-"
    job: dict[str, str] = {}

    def work(progress: Progress) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            report = run(progress)
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

    job["id"] = state.jobs.submit(kind, kb, work, total=total, skip_if_active=skip_if_active)
    return job["id"]

"""Background-job records in the catalog's database: status, progress, result, owner and resume payload.

The ``jobs`` table is created by the catalog's schema; this repository adds the columns it needs for
resuming and cancelling (older catalogs gain them), and is the only code that reads or writes job rows.
A job row whose KB was deleted is gone: a runner that finds its row missing treats the job as cancelled.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from rag.store.catalog import Catalog

UNFINISHED = ("queued", "running")
FINISHED = ("succeeded", "failed", "skipped", "cancelled")

_NEW_COLUMNS = {"owner": "TEXT", "heartbeat_at": "REAL", "payload": "TEXT", "cancel_requested": "INTEGER"}


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str
    kb: str | None
    kind: str
    status: str
    done: int
    total: int
    result: dict[str, Any] | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    owner: str | None
    heartbeat_at: float | None
    payload: dict[str, Any] | None  # what a runner needs to run the job again after a restart; None: not resumable
    cancel_requested: bool

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_json(self) -> dict[str, Any]:
        """The shape of ``GET /api/jobs/{job_id}``."""
        return {
            "job_id": self.job_id,
            "kb": self.kb,
            "kind": self.kind,
            "status": self.status,
            "progress": {"done": self.done, "total": self.total},
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_id=row["job_id"], kb=row["kb"], kind=row["kind"], status=row["status"], done=row["done"],
        total=row["total"], result=json.loads(row["result"]) if row["result"] else None, error=row["error"],
        created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
        owner=row["owner"], heartbeat_at=row["heartbeat_at"],
        payload=json.loads(row["payload"]) if row["payload"] else None,
        cancel_requested=bool(row["cancel_requested"]),
    )


class JobStore:
    """One per catalog (cheap: it holds no state but the catalog); thread-safe the way the catalog is."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        present = {row["name"] for row in catalog.db.execute("PRAGMA table_info(jobs)")}
        if any(name not in present for name in _NEW_COLUMNS):
            with self.catalog.transaction() as db:  # re-read inside the write lock: another process may have added them
                present = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
                for name, kind in _NEW_COLUMNS.items():
                    if name not in present:
                        db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    # -- writing -------------------------------------------------------------------------------
    def create(self, job_id: str, kind: str, kb: str | None, total: int = 0, owner: str | None = None,
               payload: dict[str, Any] | None = None) -> None:
        now = time.time()
        with self.catalog.transaction() as db:
            db.execute(
                "INSERT INTO jobs(job_id, kb, kind, status, total, created_at, owner, heartbeat_at, payload,"
                " cancel_requested) VALUES (?,?,?,?,?,?,?,?,?,0)",
                (job_id, kb, kind, "queued", total, now, owner, now,
                 json.dumps(payload, ensure_ascii=False) if payload is not None else None),
            )

    def beat(self, owner: str) -> None:
        """``owner`` is alive: refresh the heartbeat of its unfinished jobs."""
        with self.catalog.transaction() as db:
            db.execute("UPDATE jobs SET heartbeat_at=? WHERE owner=? AND status IN ('queued','running')",
                       (time.time(), owner))

    def update(self, job_id: str, **fields: Any) -> None:
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"], ensure_ascii=False)
        if fields.get("status") == "running":
            fields.setdefault("started_at", time.time())
        if fields.get("status") in FINISHED:
            fields.setdefault("finished_at", time.time())
        assignments = ", ".join(f"{key}=?" for key in fields)
        with self.catalog.transaction() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE job_id=?", (*fields.values(), job_id))

    def finish(self, job_id: str, status: str, result: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        """End an unfinished job (a job already ended, e.g. cancelled while queued, keeps its status)."""
        with self.catalog.transaction() as db:
            db.execute(
                "UPDATE jobs SET status=?, result=?, error=?, finished_at=? WHERE job_id=?"
                " AND status IN ('queued','running')",
                (status, json.dumps(result, ensure_ascii=False) if result is not None else None, error,
                 time.time(), job_id),
            )

    def start(self, job_id: str) -> bool:
        """queued → running; False when the job is no longer queued (cancelled, or its KB deleted)."""
        with self.catalog.transaction() as db:
            return db.execute(
                "UPDATE jobs SET status='running', started_at=COALESCE(started_at, ?) WHERE job_id=?"
                " AND status='queued' AND NOT cancel_requested", (time.time(), job_id),
            ).rowcount == 1

    def claim(self, job_id: str, previous_owner: str | None, owner: str) -> bool:
        """Take over an abandoned unfinished job to run it again (queued, new owner); False if another won."""
        with self.catalog.transaction() as db:
            return db.execute(
                "UPDATE jobs SET owner=?, status='queued', heartbeat_at=?, error=NULL WHERE job_id=?"
                " AND status IN ('queued','running') AND owner IS ?", (owner, time.time(), job_id, previous_owner),
            ).rowcount == 1

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Ask an unfinished job to stop; a queued one is cancelled at once. The job as it now stands."""
        now = time.time()
        with self.catalog.transaction() as db:
            db.execute("UPDATE jobs SET cancel_requested=1 WHERE job_id=? AND status IN ('queued','running')",
                       (job_id,))
            db.execute("UPDATE jobs SET status='cancelled', error=?, finished_at=? WHERE job_id=? AND status='queued'",
                       ("cancelled before it started", now, job_id))
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether the job should stop now: cancel asked, or its row gone (its KB was deleted)."""
        row = self.catalog.db.execute("SELECT cancel_requested FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return row is None or bool(row["cancel_requested"])

    def forget_kb(self, kb: str) -> list[str]:
        """Delete every job row of ``kb`` (its runners see them gone and stop); the ids that were unfinished."""
        with self.catalog.transaction() as db:
            unfinished = [row["job_id"] for row in db.execute(
                "SELECT job_id FROM jobs WHERE kb=? AND status IN ('queued','running')", (kb,))]
            db.execute("DELETE FROM jobs WHERE kb=?", (kb,))
        return unfinished

    def fail_unfinished(self, job_ids: list[str], reason: str) -> int:
        """Mark these jobs failed, unless they finished in the meantime."""
        now = time.time()
        with self.catalog.transaction() as db:
            return sum(db.execute(
                "UPDATE jobs SET status='failed', error=?, finished_at=? WHERE job_id=? AND status IN ('queued','running')",
                (reason, now, job_id),
            ).rowcount for job_id in job_ids)

    def purge_finished(self, older_than_s: float) -> int:
        """Delete the rows of jobs that ended more than ``older_than_s`` seconds ago (``rag gc``); how many."""
        cutoff = time.time() - older_than_s
        with self.catalog.transaction() as db:
            return db.execute(
                "DELETE FROM jobs WHERE status IN ('succeeded','failed','skipped','cancelled')"
                " AND COALESCE(finished_at, created_at) < ?", (cutoff,),
            ).rowcount

    # -- reading -------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        row = self.catalog.db.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return _record(row) if row else None

    def list(self, kb: str | None = None, limit: int = 50) -> list[JobRecord]:
        if kb is None:
            rows = self.catalog.db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,))
        else:
            rows = self.catalog.db.execute(
                "SELECT * FROM jobs WHERE kb=? ORDER BY created_at DESC LIMIT ?", (kb, limit))
        return [_record(row) for row in rows.fetchall()]

    def unfinished(self) -> list[JobRecord]:
        """Every queued or running job, oldest first."""
        rows = self.catalog.db.execute(
            "SELECT * FROM jobs WHERE status IN ('queued','running') ORDER BY created_at").fetchall()
        return [_record(row) for row in rows]

    def pending_files(self, kb: str | None = None) -> set[str]:
        """Paths named by unfinished jobs' payloads (uploads waiting to be ingested): ``rag gc`` keeps them."""
        paths: set[str] = set()
        for job in self.unfinished():
            if job.payload and (kb is None or job.kb == kb):
                paths.update(str(path) for path, _source in job.payload.get("files", []))
        return paths

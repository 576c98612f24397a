"""Background-job records in the catalog's database: status, progress, result, owner and resume payload.

The ``jobs`` table is created by the catalog's migrations; this repository is the only code that reads
or writes job rows. A job row whose KB was deleted is gone: a runner that finds its row missing treats the
job as cancelled. The owner and its heartbeat are the job's lease: on a shared (PostgreSQL) catalog a
replica takes over an abandoned job with ``claim``, which locks the row ``FOR UPDATE SKIP LOCKED`` so two
replicas noticing the same stale job never both run it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rag.store.catalog import Catalog

UNFINISHED = ("queued", "running")
FINISHED = ("succeeded", "failed", "skipped", "cancelled")


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


def _record(row: Any) -> JobRecord:
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
        self.db = catalog.database

    # -- writing -------------------------------------------------------------------------------
    def _write(self, sql: str, params: dict[str, Any] | list[dict[str, Any]]) -> int:
        """Run one statement in the catalog's write transaction; the rows it changed."""
        with self.catalog.transaction() as conn:
            return conn.execute(sa.text(sql), params).rowcount

    def create(self, job_id: str, kind: str, kb: str | None, total: int = 0, owner: str | None = None,
               payload: dict[str, Any] | None = None) -> None:
        now = time.time()
        self._write(
            "INSERT INTO jobs(job_id, kb, kind, status, total, created_at, owner, heartbeat_at, payload,"
            " cancel_requested) VALUES (:id, :kb, :kind, 'queued', :total, :now, :owner, :now, :payload, 0)",
            {"id": job_id, "kb": kb, "kind": kind, "total": total, "now": now, "owner": owner,
             "payload": json.dumps(payload, ensure_ascii=False) if payload is not None else None})

    def create_unless_active(self, job_id: str, kind: str, kb: str | None, alive_since: float, total: int = 0,
                             owner: str | None = None, payload: dict[str, Any] | None = None) -> str | None:
        """Create the job unless an unfinished job of the same kind and KB, whose runner beat since
        ``alive_since``, exists (in any process or replica on this catalog): then the job is recorded as
        skipped and that job's id returned. Check and insert are one write transaction, so two replicas
        handed the same sync at once run it once."""
        now = time.time()
        with self.catalog.transaction() as conn:
            active = conn.execute(sa.text(
                "SELECT job_id FROM jobs WHERE kind=:kind AND kb IS NOT DISTINCT FROM :kb AND status IN ('queued','running') "
                "AND heartbeat_at>=:since ORDER BY created_at LIMIT 1"
                if not self.db.sqlite else
                "SELECT job_id FROM jobs WHERE kind=:kind AND kb IS :kb AND status IN ('queued','running') "
                "AND heartbeat_at>=:since ORDER BY created_at LIMIT 1"),
                {"kind": kind, "kb": kb, "since": alive_since}).scalar()
            conn.execute(sa.text(
                "INSERT INTO jobs(job_id, kb, kind, status, total, created_at, owner, heartbeat_at, payload, "
                "cancel_requested, error, finished_at) VALUES (:id, :kb, :kind, :status, :total, :now, :owner, :now, "
                ":payload, 0, :error, :finished)"),
                {"id": job_id, "kb": kb, "kind": kind, "total": total, "now": now, "owner": owner,
                 "status": "queued" if active is None else "skipped",
                 "error": None if active is None else f"a {kind} of '{kb}' is already running (job {active})",
                 "finished": None if active is None else now,
                 "payload": json.dumps(payload, ensure_ascii=False) if payload is not None else None})
        return active

    def beat(self, owner: str) -> None:
        """``owner`` is alive: refresh the heartbeat (the lease) of its unfinished jobs."""
        self._write("UPDATE jobs SET heartbeat_at=:now WHERE owner=:owner AND status IN ('queued','running')",
                    {"now": time.time(), "owner": owner})

    def update(self, job_id: str, **fields: Any) -> None:
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"], ensure_ascii=False)
        if fields.get("status") == "running":
            fields.setdefault("started_at", time.time())
        if fields.get("status") in FINISHED:
            fields.setdefault("finished_at", time.time())
        if not fields:
            return
        unknown = set(fields) - _COLUMNS
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        assignments = ", ".join(f"{key}=:{key}" for key in fields)
        self._write(f"UPDATE jobs SET {assignments} WHERE job_id=:job_id", {**fields, "job_id": job_id})

    def finish(self, job_id: str, status: str, result: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        """End an unfinished job (a job already ended, e.g. cancelled while queued, keeps its status)."""
        self._write(
            "UPDATE jobs SET status=:status, result=:result, error=:error, finished_at=:now WHERE job_id=:id"
            " AND status IN ('queued','running')",
            {"status": status, "result": json.dumps(result, ensure_ascii=False) if result is not None else None,
             "error": error, "now": time.time(), "id": job_id})

    def start(self, job_id: str) -> bool:
        """queued → running; False when the job is no longer queued (cancelled, or its KB deleted)."""
        return self._write(
            "UPDATE jobs SET status='running', started_at=COALESCE(started_at, :now) WHERE job_id=:id"
            " AND status='queued' AND COALESCE(cancel_requested, 0)=0", {"now": time.time(), "id": job_id}) == 1

    def claim(self, job_id: str, previous_owner: str | None, owner: str) -> bool:
        """Take over an abandoned unfinished job to run it again (queued, new owner); False if another won.

        The row is locked first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write transaction is
        already exclusive): a replica claiming it at the same moment skips it instead of waiting."""
        same_owner = "owner IS NULL" if previous_owner is None else "owner=:previous"
        lock = "" if self.db.sqlite else " FOR UPDATE SKIP LOCKED"
        params = {"id": job_id, "previous": previous_owner, "owner": owner, "now": time.time()}
        with self.catalog.transaction() as conn:
            if conn.execute(sa.text(f"SELECT job_id FROM jobs WHERE job_id=:id AND status IN ('queued','running') "
                                    f"AND {same_owner}{lock}"), params).first() is None:
                return False
            return conn.execute(sa.text(
                "UPDATE jobs SET owner=:owner, status='queued', heartbeat_at=:now, error=NULL WHERE job_id=:id"),
                params).rowcount == 1

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Ask an unfinished job to stop; a queued one is cancelled at once. The job as it now stands."""
        with self.catalog.transaction() as conn:
            conn.execute(sa.text("UPDATE jobs SET cancel_requested=1 WHERE job_id=:id AND status IN ('queued','running')"),
                         {"id": job_id})
            conn.execute(sa.text("UPDATE jobs SET status='cancelled', error=:error, finished_at=:now "
                                 "WHERE job_id=:id AND status='queued'"),
                         {"error": "cancelled before it started", "now": time.time(), "id": job_id})
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether the job should stop now: cancel asked, or its row gone (its KB was deleted)."""
        with self.db.connect() as conn:
            row = conn.execute(sa.text("SELECT cancel_requested FROM jobs WHERE job_id=:id"), {"id": job_id}).first()
        return row is None or bool(row[0])

    def forget_kb(self, kb: str) -> list[str]:
        """Delete every job row of ``kb`` (its runners see them gone and stop); the ids that were unfinished."""
        with self.catalog.transaction() as conn:
            unfinished = list(conn.execute(sa.text(
                "SELECT job_id FROM jobs WHERE kb=:kb AND status IN ('queued','running')"), {"kb": kb}).scalars())
            conn.execute(sa.text("DELETE FROM jobs WHERE kb=:kb"), {"kb": kb})
        return unfinished

    def fail_unfinished(self, job_ids: list[str], reason: str) -> int:
        """Mark these jobs failed, unless they finished in the meantime."""
        now = time.time()
        with self.catalog.transaction() as conn:
            return sum(conn.execute(sa.text(
                "UPDATE jobs SET status='failed', error=:reason, finished_at=:now WHERE job_id=:id "
                "AND status IN ('queued','running')"), {"reason": reason, "now": now, "id": job_id}).rowcount
                for job_id in job_ids)

    def purge_finished(self, older_than_s: float) -> int:
        """Delete the rows of jobs that ended more than ``older_than_s`` seconds ago (``rag gc``); how many."""
        return self._write(
            "DELETE FROM jobs WHERE status IN ('succeeded','failed','skipped','cancelled')"
            " AND COALESCE(finished_at, created_at) < :cutoff", {"cutoff": time.time() - older_than_s})

    # -- reading -------------------------------------------------------------------------------
    def _read(self, sql: str, params: dict[str, Any]) -> list[JobRecord]:
        with self.db.connect() as conn:
            return [_record(row) for row in conn.execute(sa.text(sql), params).mappings().all()]

    def get(self, job_id: str) -> JobRecord | None:
        found = self._read("SELECT * FROM jobs WHERE job_id=:id", {"id": job_id})
        return found[0] if found else None

    def list(self, kb: str | None = None, limit: int = 50) -> list[JobRecord]:
        if kb is None:
            return self._read("SELECT * FROM jobs ORDER BY created_at DESC LIMIT :limit", {"limit": limit})
        return self._read("SELECT * FROM jobs WHERE kb=:kb ORDER BY created_at DESC LIMIT :limit",
                          {"kb": kb, "limit": limit})

    def unfinished(self) -> list[JobRecord]:
        """Every queued or running job, oldest first."""
        return self._read("SELECT * FROM jobs WHERE status IN ('queued','running') ORDER BY created_at", {})

    def pending_files(self, kb: str | None = None) -> set[str]:
        """Paths named by unfinished jobs' payloads (uploads waiting to be ingested): ``rag gc`` keeps them."""
        paths: set[str] = set()
        for job in self.unfinished():
            if job.payload and (kb is None or job.kb == kb):
                paths.update(str(path) for path, _source in job.payload.get("files", []))
        return paths


_COLUMNS = {"kb", "kind", "status", "done", "total", "result", "error", "created_at", "started_at", "finished_at",
            "owner", "heartbeat_at", "payload", "cancel_requested"}

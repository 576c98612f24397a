"""PostgreSQL session-level advisory locks, each held on a connection of its own."""

from __future__ import annotations

import time
from typing import Self

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rag.store.db.engine import Database, advisory_key


class AdvisoryLock:
    """``pg_advisory_lock`` on a hash of ``name``, on a dedicated connection: the lock lives exactly as
    long as that session, so a replica killed with ``kill -9`` frees it when its connection drops."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.key = advisory_key(name)
        self._conn: Connection | None = None

    def acquire(self, timeout: float = -1) -> bool:
        """Wait for the lock (``timeout`` < 0: forever, 0: only try); False when not taken in time."""
        conn = self.db.engine.connect()
        try:
            if timeout < 0:
                conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            else:
                deadline = time.monotonic() + timeout
                while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar():
                    if time.monotonic() >= deadline:
                        conn.close()
                        return False
                    time.sleep(0.05)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        finally:
            conn.close()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

"""One SQLAlchemy engine per catalog, and the catalog's single write transaction.

Every connection runs in autocommit mode: a read is one statement on the committed state (SQLite's WAL
readers never wait for the writer), and ``Database.transaction()`` opens its own transaction —
``BEGIN IMMEDIATE`` on SQLite (one writer at a time across processes, as the catalog always had), on
PostgreSQL ``BEGIN`` plus a transaction-level advisory lock that gives the same single-writer order
across replicas. Nothing outside ``rag/store`` sees which database it is.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, RowMapping

from rag.errors import ConfigError

# pg_advisory_xact_lock key of the catalog's write transaction (any constant; KB writer locks hash names).
_WRITE_KEY = 0x7261675F63617400  # "rag_cat\0"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ***, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from a name (e.g. a KB's)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def _sqlalchemy_url(target: Path | str) -> tuple[str, Path | None]:
    """The SQLAlchemy URL of a catalog given as a file path or a URL, and the file when it is SQLite."""
    if isinstance(target, Path):
        return f"sqlite:///{target}", target
    text = target.strip()
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1], None
    if text.startswith("sqlite:///"):
        return text, Path(text.removeprefix("sqlite:///"))
    if "://" in text:
        raise ConfigError(f"catalog_url {mask_url(text)!r}: use postgresql://USER:PASSWORD@HOST:PORT/DB "
                          "or sqlite:///PATH (unset: the SQLite file in RAG_HOME)")
    return f"sqlite:///{text}", Path(text)


class Database:
    """The engine of one catalog; thread-safe (a pool of autocommit connections)."""

    def __init__(self, target: Path | str) -> None:
        url, self.path = _sqlalchemy_url(target)
        self.url = mask_url(url)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(
                url, isolation_level="AUTOCOMMIT", pool_size=8, max_overflow=-1,
                connect_args={"timeout": 60, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            try:
                self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=5, max_overflow=30,
                                               pool_timeout=60, pool_pre_ping=True)
            except ModuleNotFoundError as exc:
                raise ConfigError(f"catalog_url {self.url}: PostgreSQL needs psycopg "
                                  "(pip install 'psycopg[binary]')") from exc
        self.dialect = self.engine.dialect.name  # "sqlite" | "postgresql"
        self.sqlite = self.dialect == "sqlite"
        self._local = threading.local()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads (autocommit: each statement sees the last commit)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:  # inside this thread's open transaction: read what it wrote
            yield conn
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """The catalog's write transaction: one at a time across threads, processes and replicas."""
        if getattr(self._local, "conn", None) is not None:
            raise RuntimeError("catalog transactions do not nest")
        with self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")
            self._local.conn = conn
            try:
                if not self.sqlite:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_KEY})
                yield conn
            except BaseException:
                self._local.conn = None
                conn.exec_driver_sql("ROLLBACK")
                raise
            self._local.conn = None
            conn.exec_driver_sql("COMMIT")

    def stream(self, query: sa.TextClause, params: dict[str, Any], batch: int = 2_000) -> Iterator[RowMapping]:
        """The rows of a long read (every chunk of a KB), held ``batch`` at a time, all from one committed state.

        PostgreSQL: a server-side cursor (psycopg's ``FETCH FORWARD``) inside a REPEATABLE READ, READ ONLY
        transaction, which a server-side cursor needs and which pins the snapshot; psycopg's ordinary cursor
        would first pull every row into this process. SQLite: its cursor already steps through the rows as
        they are read, on the snapshot its open statement holds."""
        with self.connect() as conn:
            if self.sqlite:
                yield from conn.execute(query, params).mappings()
                return
            inside = getattr(self._local, "conn", None) is conn  # this thread's write transaction: read in it
            if not inside:
                conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                # text(): SQLAlchemy applies a yield_per execution option only to Core selects, so set it here
                result = conn.execute(query.execution_options(stream_results=True), params).yield_per(batch)
                try:
                    yield from result.mappings()
                finally:
                    result.close()
            finally:
                if not inside:
                    conn.exec_driver_sql("ROLLBACK")

    def ping(self) -> None:
        with self.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=60000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()

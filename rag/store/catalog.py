"""The knowledge-base catalog: KBs, documents, versioned chunks, cached embeddings (jobs and
conversations have stores of their own on the same database: rag.store.jobs, rag.store.conversations).

``Catalog`` opens the database (a SQLite file, the embedded default, or ``catalog_url: postgresql://…``),
brings its schema to the newest migration, and hands each call to the repository that owns it
(rag/store/repos). Everything it returns is a dataclass or a plain dict: no database row leaves rag/store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from rag.errors import ConfigError
from rag.store.db import Database
from rag.store.db import migrate as migrations
from rag.store.db.engine import mask_url
from rag.store.records import ChunkRow, DocumentInfo, KBInfo, StagedDocument, normalize_tags
from rag.store.repos.chunks import CHUNK_FIELDS, ChunkRepository
from rag.store.repos.documents import DOCUMENT_FIELDS, DocumentRepository
from rag.store.repos.embeddings import EmbeddingRepository
from rag.store.repos.kbs import KBRepository
from rag.types import IndexChunk

__all__ = ["Catalog", "ChunkRow", "DocumentInfo", "KBInfo", "StagedDocument", "normalize_tags"]


class Catalog:
    """Thread-safe and multi-process safe (SQLite WAL with one writer at a time; on PostgreSQL, replicas)."""

    DOCUMENT_FIELDS = DOCUMENT_FIELDS
    CHUNK_FIELDS = CHUNK_FIELDS

    def __init__(self, target: Path | str) -> None:
        """``target``: the SQLite file, or a catalog URL (``postgresql://USER:PASSWORD@HOST:PORT/DB``)."""
        self.database = Database(target)
        self.path: Path | None = self.database.path  # None: not a file (PostgreSQL)
        try:
            migrations.upgrade(self.database)
        except DBAPIError as exc:
            self.database.close()
            raise ConfigError(f"catalog_url {self.database.url}: cannot open the catalog: "
                              f"{_reason(exc, target)}") from None
        self.kbs = KBRepository(self.database)
        self.docs = DocumentRepository(self.database)
        self.chunks = ChunkRepository(self.database)
        self.embeddings = EmbeddingRepository(self.database)

    @property
    def postgres(self) -> bool:
        return not self.database.sqlite

    def transaction(self) -> Any:
        """The catalog's single write transaction (``with catalog.transaction() as conn:``), for the stores
        sharing its database."""
        return self.database.transaction()

    def ping(self) -> None:
        """Raise unless the catalog answers a query (the readiness check)."""
        self.database.ping()

    def writer_lock(self, kb: str, folder: Path) -> Any:
        """The lock that lets one writer at a time write ``kb``: a file lock in its folder on a SQLite catalog
        (one host), a PostgreSQL advisory lock on a shared catalog (any replica)."""
        if self.database.sqlite:
            from filelock import FileLock

            return _FileWriterLock(FileLock(str(folder / "write.lock")))
        from rag.store.db.advisory import AdvisoryLock

        return AdvisoryLock(self.database, f"rag-kb-writer:{kb}")

    def close(self) -> None:
        self.database.close()

    # -- knowledge bases ---------------------------------------------------------------------
    def create_kb(self, name: str, description: str = "") -> KBInfo:
        return self.kbs.create(name, description)

    def kb_exists(self, name: str) -> bool:
        return self.kbs.exists(name)

    def get_kb(self, name: str) -> KBInfo:
        return self.kbs.get(name)

    def list_kbs(self) -> list[KBInfo]:
        return self.kbs.list()

    def delete_kb(self, name: str) -> None:
        self.kbs.delete(name)

    def generation(self, kb: str) -> int:
        return self.kbs.generation(kb)

    # -- documents ---------------------------------------------------------------------------
    def documents(self, kb: str, origin: str | None = None) -> list[DocumentInfo]:
        return self.docs.list(kb, origin)

    def document(self, kb: str, doc_id: str) -> DocumentInfo:
        return self.docs.get(kb, doc_id)

    def set_tags(self, kb: str, doc_id: str, tags: Iterable[str]) -> DocumentInfo:
        return self.docs.set_tags(kb, doc_id, tags)

    def documents_without_origin(self) -> list[tuple[str, str, str, str | None]]:
        return self.docs.without_origin()

    def set_origins(self, origins: Iterable[tuple[str, str, str]]) -> None:
        self.docs.set_origins(origins)

    def document_chunks(self, kb: str, doc_id: str) -> list[ChunkRow]:
        return self.chunks.of_document(kb, doc_id)

    # -- backups (rag/backup.py) ---------------------------------------------------------------
    def document_rows(self, kb: str) -> list[dict[str, Any]]:
        return self.docs.rows(kb)

    def chunk_rows(self, kb: str) -> Iterator[dict[str, Any]]:
        return self.chunks.rows(kb)

    def restore_rows(self, kb: str, documents: list[dict[str, Any]], chunks: Iterable[dict[str, Any]]) -> int:
        return self.chunks.restore(kb, documents, chunks)

    def embedding_rows(self, text_hashes: list[str]) -> Iterator[tuple[str, str, bytes]]:
        return self.embeddings.rows(text_hashes)

    # -- writing: stage, then commit a generation --------------------------------------------
    def recover(self, kb: str) -> int:
        return self.chunks.recover(kb)

    def stage_documents(self, kb: str, generation: int, documents: list[tuple[str, list[IndexChunk]]]
                        ) -> tuple[list[int], list[list[int]]]:
        return self.chunks.stage_documents(kb, generation, documents)

    def stage_chunks(self, kb: str, generation: int, doc_id: str, chunks: Iterable[IndexChunk]) -> list[int]:
        return self.chunks.stage_chunks(kb, generation, doc_id, chunks)

    def stage_tombstones(self, kb: str, generation: int, doc_ids: Iterable[str]) -> list[int]:
        return self.chunks.stage_tombstones(kb, generation, doc_ids)

    def commit(self, kb: str, generation: int, staged: list[StagedDocument], deleted: list[str]) -> None:
        self.chunks.commit(kb, generation, staged, deleted)

    # -- reading chunks ----------------------------------------------------------------------
    def visible_chunks(self, kb: str, generation: int) -> Iterator[Any]:
        return self.chunks.visible(kb, generation)

    def visible_token_totals(self, kb: str, generation: int) -> tuple[int, int]:
        return self.chunks.token_totals(kb, generation)

    def chunks_by_id(self, kb: str, ids: Iterable[int], generation: int) -> dict[int, ChunkRow]:
        return self.chunks.by_id(kb, ids, generation)

    def chunk_texts_by_hash(self, kb: str, text_hashes: set[str]) -> list[tuple[str, str, str]]:
        return self.chunks.texts_by_hash(kb, text_hashes)

    # -- embeddings cache --------------------------------------------------------------------
    def cached_embeddings(self, model: str, text_hashes: list[str]) -> dict[str, np.ndarray]:
        return self.embeddings.cached(model, text_hashes)

    def store_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        self.embeddings.store(model, vectors)

    def embedding_count(self) -> int:
        return self.embeddings.count()

    def unused_embedding_count(self) -> int:
        return self.embeddings.unused_count()

    def drop_unused_embeddings(self, keep: int) -> int:
        return self.embeddings.drop_unused(keep)

    # -- storage -----------------------------------------------------------------------------
    def kb_text_bytes(self, kb: str) -> int:
        return self.chunks.text_bytes(kb)

    def vacuum(self) -> None:
        """Give back free space (``rag gc --vacuum``): SQLite rewrites its file and truncates the WAL."""
        with self.database.connect() as conn:
            if self.database.sqlite:
                conn.exec_driver_sql("VACUUM")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                conn.exec_driver_sql("VACUUM")

    def file_bytes(self) -> int:
        """Bytes of the catalog: its file and write-ahead log, or the PostgreSQL database's size."""
        if self.path is None:
            with self.database.connect() as conn:
                return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one())
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


class _FileWriterLock:
    """A file lock with the advisory lock's acquire/release shape."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def acquire(self, timeout: float = -1) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


def _reason(exc: DBAPIError, target: Path | str) -> str:
    """The driver's first line, with any password of ``target`` masked."""
    text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    secret = mask_url(str(target))
    if secret != str(target):
        password = str(target).split("://", 1)[1].split("@", 1)[0].partition(":")[2]
        if password:
            text = text.replace(password, "***")
    return text

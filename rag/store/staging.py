"""What every backend's writer shares: the KB's single-writer lock and staging through the catalog.

A backend's writer subclasses ``StagingWriter`` and adds two things: ``_open`` (undo what an interrupted
writer left in its index, then set ``generation``) and ``commit`` (publish the staged rows, then flip the
catalog's generation). The catalog holds the staged chunk rows, so staging is the same for every backend.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Self

from rag.errors import RagError
from rag.store.catalog import Catalog, StagedDocument
from rag.types import IndexChunk


class WriterBusy(RagError):
    """Another thread or process is writing this KB, and the caller asked not to wait."""

    code = "kb_busy"
    http_status = 409


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(key: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


class StagingWriter:
    """One writer per KB at a time, across threads (a lock per folder) and processes or replicas (the
    catalog's writer lock: a file lock beside a SQLite catalog, an advisory lock on PostgreSQL)."""

    def __init__(self, catalog: Catalog, kb: str, folder: Path, wait: bool = True) -> None:
        self.catalog = catalog
        self.kb = kb
        self.kb_dir = folder
        self._wait = wait
        self._file_lock = catalog.writer_lock(kb, folder)
        self._thread_lock = _thread_lock(str(folder.resolve()))
        self._staged: list[StagedDocument] = []
        self._deleted: list[str] = []
        self._rows: dict[str, tuple[list[int], list[IndexChunk]]] = {}  # doc id → staged chunks
        self._dead: list[int] = []
        self.generation = 0

    def _open(self) -> None:
        raise NotImplementedError

    def _undo(self) -> None:
        """After an error inside the ``with`` block: drop what was staged (the last commit stays)."""
        self.catalog.recover(self.kb)

    def __enter__(self) -> Self:
        self.kb_dir.mkdir(parents=True, exist_ok=True)
        busy = WriterBusy(f"knowledge base '{self.kb}' is being written by another sync or ingest")
        if not self._thread_lock.acquire(blocking=self._wait):
            raise busy
        try:
            taken = self._file_lock.acquire(timeout=-1 if self._wait else 0)
        except BaseException:
            self._thread_lock.release()
            raise
        if not taken:
            self._thread_lock.release()
            raise busy
        try:
            self._open()
        except BaseException:
            self._file_lock.release()
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is not None:
                self._undo()
        finally:
            self._file_lock.release()
            self._thread_lock.release()

    @property
    def pending(self) -> int:
        return len(self._staged) + len(self._deleted)

    def stage(self, document: StagedDocument, chunks: list[IndexChunk]) -> None:
        """Stage a new version of a document (or its failure): invisible until ``commit``."""
        self.stage_many([(document, chunks)])

    def stage_many(self, items: list[tuple[StagedDocument, list[IndexChunk]]]) -> None:
        """Stage several documents at once (one catalog transaction)."""
        indexed = [(document, chunks) for document, chunks in items if not document.failed]
        dead, ids = self.catalog.stage_documents(self.kb, self.generation,
                                                 [(document.doc_id, chunks) for document, chunks in indexed])
        self._dead.extend(dead)
        for (document, chunks), chunk_ids in zip(indexed, ids, strict=True):
            self._rows[document.doc_id] = (chunk_ids, chunks)
        self._staged.extend(document for document, _ in items)

    def delete(self, doc_id: str) -> None:
        self._dead.extend(self.catalog.stage_tombstones(self.kb, self.generation, [doc_id]))
        self._rows.pop(doc_id, None)
        self._deleted.append(doc_id)

"""The single writer of a KB: stages documents, then commits them as a new generation.

One writer per KB at a time, across threads and processes (a file lock). Opening a writer first
undoes whatever an interrupted writer staged, so a ``kill -9`` leaves the last committed state.
"""

from __future__ import annotations

import threading
from pathlib import Path

from filelock import FileLock, Timeout

from rag.embed import EmbeddingRouter
from rag.errors import RagError
from rag.store.bm25_index import BM25Params
from rag.store.catalog import Catalog, StagedDocument
from rag.store.snapshot import build_snapshot, remove_stale, snapshot_dir


class WriterBusy(RagError):
    """Another thread or process is writing this KB, and the caller asked not to wait."""

    code = "kb_busy"
    http_status = 409

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(key: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


class KBWriter:
    def __init__(
        self,
        catalog: Catalog,
        kb: str,
        kb_dir: Path,
        router: EmbeddingRouter,
        bm25: BM25Params,
        wait: bool = True,
    ) -> None:
        self.catalog = catalog
        self._wait = wait
        self.kb = kb
        self.kb_dir = kb_dir
        self._router = router
        self._bm25 = bm25
        self._file_lock = FileLock(str(kb_dir / "write.lock"))
        self._thread_lock = _thread_lock(str(kb_dir.resolve()))
        self._staged: list[StagedDocument] = []
        self._deleted: list[str] = []
        self.generation = 0

    def __enter__(self) -> KBWriter:
        self.kb_dir.mkdir(parents=True, exist_ok=True)
        busy = WriterBusy(f"knowledge base '{self.kb}' is being written by another sync or ingest")
        if not self._thread_lock.acquire(blocking=self._wait):
            raise busy
        try:
            self._file_lock.acquire(timeout=-1 if self._wait else 0)
        except Timeout:
            self._thread_lock.release()
            raise busy from None
        except BaseException:
            self._thread_lock.release()
            raise
        try:
            self._open()
        except BaseException:
            self._file_lock.release()
            self._thread_lock.release()
            raise
        return self

    def _open(self) -> None:
        self.catalog.recover(self.kb)
        committed = self.catalog.generation(self.kb)
        remove_stale(self.kb_dir, committed - 1, committed)
        if committed > 0 and not (snapshot_dir(self.kb_dir, committed) / "manifest.json").exists():
            # The committed snapshot is gone (deleted by hand, lost disk): the catalog is the source of truth.
            build_snapshot(self.catalog, self.kb, committed, self.kb_dir, self._router, self._bm25)
        self.generation = committed + 1

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is not None:
                self.catalog.recover(self.kb)
        finally:
            self._file_lock.release()
            self._thread_lock.release()

    @property
    def pending(self) -> int:
        return len(self._staged) + len(self._deleted)

    def stage(self, document: StagedDocument, chunks: list[tuple[object, ...]]) -> None:
        """Stage a new version of a document (or its failure). Chunk tuples as in Catalog.stage_chunks."""
        if not document.failed:
            self.catalog.stage_tombstones(self.kb, self.generation, [document.doc_id])
            self.catalog.stage_chunks(self.kb, self.generation, document.doc_id, chunks)
        self._staged.append(document)

    def delete(self, doc_id: str) -> None:
        self.catalog.stage_tombstones(self.kb, self.generation, [doc_id])
        self._deleted.append(doc_id)

    def commit(self) -> int:
        """Publish everything staged as one generation; returns the generation now visible."""
        if not self.pending:
            return self.generation - 1
        build_snapshot(self.catalog, self.kb, self.generation, self.kb_dir, self._router, self._bm25)
        self.catalog.commit(self.kb, self.generation, self._staged, self._deleted)
        remove_stale(self.kb_dir, self.generation - 1, self.generation)
        self._staged, self._deleted = [], []
        self.generation += 1
        return self.generation - 1

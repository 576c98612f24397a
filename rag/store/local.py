"""The local index backend: segments on disk beside the SQLite catalog (see docs/architecture.md)."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import faiss

from rag.embed import EmbeddingRouter
from rag.errors import ConfigError
from rag.store.bm25_index import BM25Params
from rag.store.catalog import Catalog
from rag.store.manifest import KBFiles
from rag.store.merge import merge
from rag.store.reader import LocalReader, ReaderCache
from rag.store.segment import DenseSettings
from rag.store.writer import KBWriter

log = logging.getLogger(__name__)
_open_backends: weakref.WeakSet[LocalBackend] = weakref.WeakSet()


@atexit.register
def _stop_merges_at_exit() -> None:
    """A short-lived process (`rag sync`, `rag ingest`) must not exit in the middle of a background merge's
    segment write: its daemon thread would be killed, leaving a ``.tmp`` folder for the next writer to
    clean. Merges are told to stop and awaited; the step under way finishes, nothing more is published."""
    for backend in list(_open_backends):
        backend.stop_merges()


def single_threaded_blas() -> None:
    """Limit numpy's BLAS (OpenBLAS) to one thread in this process, once.

    A search multiplies one query vector by a segment's vectors: memory-bound, nothing for a second
    thread to win, while waking BLAS worker threads costs dearly on a busy machine (measured on the
    loaded 2-core development machine: 10,000 × 384 product 32 ms with OpenBLAS threads, 4.5 ms with one).
    """
    global _blas_limited
    if not _blas_limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
        _blas_limited = True


_blas_limited = False


def gpu_resources(device: str) -> object | None:
    """FAISS GPU resources for ``device == "cuda"``; a ConfigError when this FAISS build or machine has no GPU."""
    if device != "cuda":
        return None
    if not hasattr(faiss, "StandardGpuResources"):
        raise ConfigError("store.device is 'cuda' but the installed FAISS has no GPU support: "
                          "install the gpu extra (pip install 'rag-assistant[gpu]') or set store.device: cpu")
    if faiss.get_num_gpus() < 1:
        raise ConfigError("store.device is 'cuda' but FAISS finds no GPU on this machine: set store.device: cpu")
    return faiss.StandardGpuResources()


class LocalBackend:
    """IndexBackend over ``kbs/<kb>/`` folders of immutable segments, tombstones and manifests."""

    def __init__(self, catalog: Catalog, kb_dir: Callable[[str], Path], router: EmbeddingRouter,
                 bm25: BM25Params, dense: DenseSettings | None = None, merge_factor: int = 10,
                 background_merge: bool = True, device: str = "cpu") -> None:
        self.catalog = catalog
        self._kb_dir = kb_dir
        self.router = router
        self.bm25 = bm25
        self.dense = dense or DenseSettings()
        self.merge_factor = merge_factor
        self.background_merge = background_merge
        self._gpu = gpu_resources(device)
        single_threaded_blas()
        self._files: dict[str, KBFiles] = {}
        self._files_lock = threading.Lock()
        self._merging: dict[str, threading.Thread] = {}
        self._stopping: set[str] = set()  # KBs being forgotten (deleted): no merge starts, running ones stop
        self._merging_lock = threading.Lock()
        self.readers = ReaderCache(catalog, self.files, bm25, self.dense, self._rebuild, self._gpu)
        _open_backends.add(self)

    def files(self, kb: str) -> KBFiles:
        with self._files_lock:
            found = self._files.get(kb)
            if found is None:
                found = self._files[kb] = KBFiles(self._kb_dir(kb))
            return found

    # -- IndexBackend ------------------------------------------------------------------------------
    def writer(self, kb: str, wait: bool = True) -> KBWriter:
        on_commit = self._schedule_merge if self.background_merge else None
        return KBWriter(self.catalog, kb, self.files(kb), self.router, self.dense, wait=wait, on_commit=on_commit)

    def reader(self, kb: str) -> LocalReader:
        return self.readers.get(kb)

    def optimize(self, kb: str) -> int:
        """Merge all of the KB's segments into one, dropping deleted chunks. Returns the segments now."""
        self.catalog.generation(kb)  # KBNotFound for an unknown KB
        files = self.files(kb)
        if not files.root.exists() or not files.generations():
            return 0
        merge(files, self.dense, self.merge_factor, force=True)
        latest = files.latest()
        return len(latest.segments) if latest else 0

    def merge(self, kb: str) -> int:
        """Run the tiered merge policy now (what the background thread does after a commit)."""
        return merge(self.files(kb), self.dense, self.merge_factor, stop=lambda: kb in self._stopping)

    def forget(self, kb: str, timeout: float = 120.0) -> None:
        """Drop what is loaded of ``kb`` before its folder is removed: a background merge of it is told
        to stop and awaited (it stops before its next step, never publishing), so none writes into a
        folder being deleted."""
        with self._merging_lock:
            self._stopping.add(kb)
            running = self._merging.get(kb)
        try:
            if running is not None and running is not threading.current_thread():
                running.join(timeout)
            self.readers.forget(kb)
            with self._files_lock:
                self._files.pop(kb, None)
        finally:
            with self._merging_lock:
                self._stopping.discard(kb)

    def stop_merges(self, timeout: float = 120.0) -> None:
        """Tell every running background merge to stop before its next step, and wait for them."""
        with self._merging_lock:
            running = dict(self._merging)
            self._stopping.update(running)
        try:
            for thread in running.values():
                if thread is not threading.current_thread():
                    thread.join(timeout)
        finally:
            with self._merging_lock:
                self._stopping.difference_update(running)

    # -- internals --------------------------------------------------------------------------------
    def _rebuild(self, kb: str) -> None:
        with self.writer(kb):  # opening a writer rebuilds a missing committed index from the catalog
            pass

    def _schedule_merge(self, kb: str) -> None:
        with self._merging_lock:
            if kb in self._merging or kb in self._stopping:
                return
            thread = threading.Thread(target=self._merge_in_background, args=(kb,), name=f"rag-merge-{kb}",
                                      daemon=True)
            self._merging[kb] = thread
        thread.start()

    def _merge_in_background(self, kb: str) -> None:
        try:
            self.merge(kb)
        except FileNotFoundError:
            if kb in self._stopping or not self._kb_dir(kb).exists():
                log.debug("background merge of knowledge base %r ended: the knowledge base was deleted", kb)
            else:
                log.exception("background merge of knowledge base %r failed", kb)
        except Exception:  # a failed merge leaves the segments as they were; the next commit tries again
            log.exception("background merge of knowledge base %r failed", kb)
        finally:
            with self._merging_lock:
                self._merging.pop(kb, None)

"""Readers hold the snapshot of the last committed generation and switch when a writer commits a new one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from rag.errors import RagError
from rag.store.catalog import Catalog
from rag.store.snapshot import Snapshot, load_snapshot


class IndexMissing(RagError):
    code = "index_missing"
    http_status = 503


class SnapshotCache:
    def __init__(self, catalog: Catalog, kb_dir: Callable[[str], Path]) -> None:
        self._catalog = catalog
        self._kb_dir = kb_dir
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def get(self, kb: str) -> Snapshot:
        for _ in range(5):
            generation = self._catalog.generation(kb)
            cached = self._snapshots.get(kb)
            if cached is not None and cached.generation == generation:
                return cached
            if generation == 0:
                snapshot: Snapshot | None = Snapshot.empty()
            else:
                try:
                    snapshot = load_snapshot(self._kb_dir(kb), generation)
                except (OSError, RuntimeError, ValueError):
                    # A writer removed this (now superseded) generation while we loaded it: FAISS raises
                    # RuntimeError, numpy/json ValueError or OSError for vanished files. Read the generation again.
                    snapshot = None
            if snapshot is not None:
                with self._lock:
                    self._snapshots[kb] = snapshot
                return snapshot
        raise IndexMissing(f"the index of knowledge base '{kb}' is missing; any `rag sync` or `rag ingest` of it rebuilds it")

    def forget(self, kb: str) -> None:
        with self._lock:
            self._snapshots.pop(kb, None)

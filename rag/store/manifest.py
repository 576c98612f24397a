"""The commit point of a KB's index: ``manifests/manifest-<G>.json`` lists the segments live at generation G
and, per segment, the tombstone file (chunk ids deleted from it).

A manifest is written under a temporary name, fsynced and renamed, and only then does the catalog's
generation flip to G. A merge rewrites the newest manifest in place (same generation, same visible
chunks, fewer segments). Both take ``manifest.lock`` for the few milliseconds of the swap.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from rag.store.segment import fsync_path, load_npy


@dataclass(slots=True)
class SegmentEntry:
    name: str
    rows: int
    deletes: str | None = None  # file under deletes/ holding the sorted int64 chunk ids deleted from it
    dead: int = 0

    @property
    def live(self) -> int:
        return self.rows - self.dead


@dataclass(slots=True)
class Manifest:
    generation: int
    segments: list[SegmentEntry] = field(default_factory=list)
    version: int = 0  # bumped by each merge that rewrites this generation's manifest

    def to_json(self) -> dict[str, object]:
        return {"generation": self.generation, "version": self.version,
                "segments": [{"name": s.name, "rows": s.rows, "deletes": s.deletes, "dead": s.dead}
                             for s in self.segments]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Manifest:
        segments = [SegmentEntry(**entry) for entry in data["segments"]]  # type: ignore[union-attr,arg-type]
        return cls(int(data["generation"]), segments, int(data.get("version", 0)))  # type: ignore[arg-type]


class KBFiles:
    """The folder layout of one KB's index, and its locks."""

    def __init__(self, kb_dir: Path) -> None:
        self.root = kb_dir
        self.segments = kb_dir / "segments"
        self.deletes = kb_dir / "deletes"
        self.manifests = kb_dir / "manifests"
        self.manifest_lock = _Lock(kb_dir / "manifest.lock")
        self.merge_lock = _Lock(kb_dir / "merge.lock")

    def ensure(self) -> None:
        for folder in (self.segments, self.deletes, self.manifests):
            folder.mkdir(parents=True, exist_ok=True)

    def manifest_path(self, generation: int) -> Path:
        return self.manifests / f"manifest-{generation:08d}.json"

    def generations(self) -> list[int]:
        if not self.manifests.exists():
            return []
        found = []
        for path in self.manifests.glob("manifest-*.json"):
            try:
                found.append(int(path.stem.split("-", 1)[1]))
            except ValueError:
                continue
        return sorted(found)

    def read(self, generation: int) -> Manifest | None:
        try:
            data = json.loads(self.manifest_path(generation).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return Manifest.from_json(data)

    def latest(self) -> Manifest | None:
        generations = self.generations()
        return self.read(generations[-1]) if generations else None

    def publish(self, manifest: Manifest) -> None:
        """Atomically (re)place the manifest of ``manifest.generation``: on disk before it is visible."""
        self.ensure()
        target = self.manifest_path(manifest.generation)
        tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(manifest.to_json()), encoding="utf-8")
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(self.manifests)

    def write_deletes(self, segment: str, generation: int, chunk_ids: np.ndarray) -> str:
        self.ensure()
        name = f"{segment}.g{generation:08d}.{uuid.uuid4().hex[:8]}.npy"
        path = self.deletes / name
        np.save(path, np.asarray(np.unique(chunk_ids), dtype=np.int64), allow_pickle=False)
        fsync_path(path)
        return name

    def read_deletes(self, name: str | None) -> np.ndarray:
        if name is None:
            return np.empty(0, dtype=np.int64)
        return load_npy(self.deletes / name)

    def new_segment_name(self, generation: int) -> str:
        return f"seg-{generation:08d}-{uuid.uuid4().hex[:8]}"

    def remove_unreferenced(self, keep_from: int, keep_to: int | None = None) -> None:
        """Drop manifests outside [keep_from, keep_to], then segments and tombstone files no kept manifest
        names, and leftovers of interrupted writes. Call under the manifest lock, with no merge running."""
        for generation in self.generations():
            if generation < keep_from or (keep_to is not None and generation > keep_to):
                self.manifest_path(generation).unlink(missing_ok=True)
        for leftover in self.manifests.glob("*.tmp") if self.manifests.exists() else []:
            leftover.unlink(missing_ok=True)
        segments: set[str] = set()
        deletes: set[str] = set()
        for generation in self.generations():
            manifest = self.read(generation)
            if manifest is None:
                continue
            segments.update(s.name for s in manifest.segments)
            deletes.update(s.deletes for s in manifest.segments if s.deletes)
        if self.segments.exists():
            for folder in self.segments.iterdir():
                if folder.name not in segments:
                    shutil.rmtree(folder, ignore_errors=True)
        if self.deletes.exists():
            for path in self.deletes.iterdir():
                if path.name not in deletes:
                    path.unlink(missing_ok=True)
        for legacy in self.root.glob("gen-*"):  # snapshot folders of the engine before segments
            shutil.rmtree(legacy, ignore_errors=True)


class _Lock:
    """A lock across threads (a threading.Lock per path) and processes (a file lock)."""

    _guard = threading.Lock()
    _threads: dict[str, threading.Lock] = {}

    def __init__(self, path: Path) -> None:
        self.path = path
        key = str(path.resolve())
        with _Lock._guard:
            self._thread = _Lock._threads.setdefault(key, threading.Lock())
        self._file = FileLock(str(path), thread_local=False)

    @contextmanager
    def hold(self, wait: bool = True) -> Iterator[bool]:
        """Yields True when the lock is held; with ``wait=False`` yields False at once if it is taken."""
        if not self._thread.acquire(blocking=wait):
            yield False
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._file.acquire(timeout=-1 if wait else 0)
            except Timeout:
                yield False
                return
            try:
                yield True
            finally:
                self._file.release()
        finally:
            self._thread.release()

"""Storage hygiene: what a KB uses, its quota, and the garbage collector (`rag gc`).

The collector drops cached embeddings no live chunk uses (keeping the ``store.unused_embeddings_kept``
newest for re-adds), purges finished job records older than ``jobs.keep_days``, and removes stored
upload files no indexed document or unfinished job names, the upload folders of deleted KBs and the
staging files an interrupted upload left. Files younger than ``GRACE_S`` are never removed: an upload
is stored a moment before its job or document names it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import PayloadTooLarge
from rag.store.catalog import Catalog

GRACE_S = 120.0
MB = 1024 * 1024
# `rag gc` merges a KB's index into one segment when at least this share of its indexed rows are deleted
# ones (the background merge only rewrites a segment alone when more than half of it is deleted).
COMPACT_DEAD_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class KBStorage:
    """Bytes a KB uses: its stored uploads, its index files and the text of its chunks in the catalog."""

    uploads_bytes: int
    index_bytes: int
    catalog_bytes: int

    @property
    def total(self) -> int:
        return self.uploads_bytes + self.index_bytes + self.catalog_bytes

    def to_json(self) -> dict[str, int]:
        return {**asdict(self), "total_bytes": self.total}


@dataclass(slots=True)
class GCReport:
    embeddings_dropped: int = 0
    unused_embeddings_kept: int = 0
    embeddings_left: int = 0
    jobs_purged: int = 0
    upload_files_removed: int = 0
    upload_bytes_freed: int = 0
    upload_folders_removed: int = 0  # of KBs that no longer exist
    staging_files_removed: int = 0
    indexes_compacted: int = 0
    catalog_file_bytes: int = 0  # after the collection (and the VACUUM, when asked)
    vacuumed: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


def tree_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (0 when it does not exist); symlinks are not followed."""
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # removed while we walked (a merge, a commit's cleanup)
    return total


def kb_storage(catalog: Catalog, kb: str, uploads_dir: Path, index_dir: Path) -> KBStorage:
    return KBStorage(tree_bytes(uploads_dir), tree_bytes(index_dir), catalog.kb_text_bytes(kb))


def check_quota(storage: KBStorage, incoming_bytes: int, max_kb_mb: float | None, kb: str) -> None:
    """Refuse (413, with the figures) an upload that would take the KB past ``server.max_kb_mb``."""
    if max_kb_mb is None:
        return
    limit = max_kb_mb * MB
    after = storage.total + incoming_bytes
    if after > limit:
        raise PayloadTooLarge(
            f"knowledge base '{kb}' would use {after / MB:.2f} MB with this upload of {incoming_bytes / MB:.2f} MB, "
            f"over its quota of {max_kb_mb:g} MB (server.max_kb_mb); it uses {storage.total / MB:.2f} MB now "
            f"(uploads {storage.uploads_bytes / MB:.2f}, index {storage.index_bytes / MB:.2f}, "
            f"catalog {storage.catalog_bytes / MB:.2f}): delete documents or raise the quota")


def remove_stored_upload(uploads_dir: Path, path: str | None) -> int:
    """Delete a document's stored original if it lies in the KB's uploads folder; returns the bytes freed."""
    if not path:
        return 0
    folder = uploads_dir.resolve()
    file = Path(path).resolve()
    if not file.is_relative_to(folder) or file == folder or not file.is_file():
        return 0
    size = file.stat().st_size
    file.unlink(missing_ok=True)
    _prune_empty_parents(file.parent, folder)
    return size


def _prune_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty
        folder = folder.parent


def _pending_files(catalog: Catalog) -> set[str] | None:
    """Paths of uploads that unfinished jobs will still ingest; None when the job store cannot tell."""
    try:
        from rag.store.jobs import JobStore
    except ImportError:
        return None
    return {str(Path(p).resolve()) for p in JobStore(catalog).pending_files()}


def _purge_jobs(catalog: Catalog, keep_days: float) -> int:
    try:
        from rag.store.jobs import JobStore
    except ImportError:
        return 0
    return JobStore(catalog).purge_finished(keep_days * 86400)


def compact_indexes(index: object, catalog: Catalog) -> int:
    """Merge the local index of each KB with ``COMPACT_DEAD_SHARE`` or more deleted rows; how many were."""
    from rag.store.local import LocalBackend

    if not isinstance(index, LocalBackend):
        return 0  # another backend compacts by itself
    compacted = 0
    for kb in catalog.list_kbs():
        manifest = index.files(kb.name).latest() if index.files(kb.name).root.exists() else None
        rows = sum(entry.rows for entry in manifest.segments) if manifest else 0
        dead = sum(entry.dead for entry in manifest.segments) if manifest else 0
        if rows and dead / rows >= COMPACT_DEAD_SHARE:
            index.optimize(kb.name)
            _drop_previous_generation(index, kb.name)
            compacted += 1
    return compacted


def _drop_previous_generation(index: Any, kb: str) -> None:
    """After a compaction, drop the previous generation's manifest and the segments only it named.

    Commits keep the previous manifest for readers that looked up the generation just before a commit
    flipped it; under the KB's writer lock (no commit can flip it now) every reader loads the committed
    one, so the merged-away segments can go now instead of at the next commit. Skipped while busy."""
    from rag.store.staging import WriterBusy

    try:
        with index.writer(kb, wait=False) as writer:
            files = writer.files
            committed = writer.generation - 1
            with files.merge_lock.hold(wait=False) as free, files.manifest_lock.hold():
                if free:
                    files.remove_unreferenced(committed, committed)
    except WriterBusy:
        return


def collect(catalog: Catalog, settings: Settings, now: float | None = None, index: object = None,
            vacuum: bool = False) -> GCReport:
    """One full collection (``rag gc``); ``index``: the service's index backend, whose local indexes with
    many deleted rows are merged. ``vacuum``: rewrite the catalog file afterwards so that it shrinks
    (SQLite otherwise keeps freed pages for reuse); it briefly blocks every writer of every KB."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    report = GCReport()
    if index is not None:
        report.indexes_compacted = compact_indexes(index, catalog)
    report.embeddings_dropped = catalog.drop_unused_embeddings(settings.store.unused_embeddings_kept)
    report.unused_embeddings_kept = catalog.unused_embedding_count()
    report.embeddings_left = catalog.embedding_count()
    report.jobs_purged = _purge_jobs(catalog, settings.jobs.keep_days)
    _collect_uploads(catalog, settings.home / "uploads", now, report)
    if vacuum:
        catalog.vacuum()
        report.vacuumed = True
    report.catalog_file_bytes = catalog.file_bytes()
    report.seconds = time.perf_counter() - started
    return report


def _collect_uploads(catalog: Catalog, root: Path, now: float, report: GCReport) -> None:
    if not root.is_dir():
        return
    pending = _pending_files(catalog)
    for entry in sorted(root.iterdir()):
        if entry.name == ".staging":
            for leftover in entry.glob("upload-*"):
                if _older(leftover, now):
                    leftover.unlink(missing_ok=True)
                    report.staging_files_removed += 1
            continue
        if not entry.is_dir():
            continue
        if not catalog.kb_exists(entry.name):
            if _older(entry, now):
                report.upload_bytes_freed += tree_bytes(entry)
                shutil.rmtree(entry, ignore_errors=True)
                report.upload_folders_removed += 1
            continue
        if pending is None:
            continue  # without the job store we cannot tell which files queued uploads still need
        kept = {str(Path(doc.path).resolve()) for doc in catalog.documents(entry.name)
                if doc.path and doc.status == "indexed"} | pending
        folder = entry.resolve()
        for file in sorted(folder.rglob("*"), reverse=True):  # deepest first: folders emptied are removed
            if file.is_dir():
                _prune_empty_parents(file, folder)
            elif str(file) not in kept and _older(file, now):
                report.upload_bytes_freed += file.stat().st_size
                file.unlink(missing_ok=True)
                report.upload_files_removed += 1


def _older(path: Path, now: float) -> bool:
    try:
        return now - path.stat().st_mtime > GRACE_S
    except FileNotFoundError:
        return False


class EmbeddingSweeper:
    """The cheap collection after commits: the embedding sweep, in the background, at most once per interval."""

    def __init__(self, catalog: Catalog, keep: int, min_interval_s: float = 300.0) -> None:
        self.catalog = catalog
        self.keep = keep
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None

    def poke(self) -> bool:
        """Start a sweep unless one ran within the interval or is running; returns whether one started."""
        with self._lock:
            if self._running or time.monotonic() - self._last < self.min_interval_s and self._last:
                return False
            self._running = True
            self._last = time.monotonic()
            self._thread = threading.Thread(target=self._sweep, name="rag-embedding-gc", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float = 60.0) -> None:
        """Until the sweep under way (if any) has finished."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _sweep(self) -> None:
        try:
            self.catalog.drop_unused_embeddings(self.keep)
        except Exception:  # a busy or closed catalog: the next poke or `rag gc` does it
            pass
        finally:
            with self._lock:
                self._running = False

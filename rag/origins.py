"""Where a document came from: ``upload``, ``sync:FOLDER`` or ``schedule:NAME`` (docs/sync.md, "Origins").

A sync mirrors only the documents of its own origin, so the name must be stable: a folder inside one of
``server.sync_roots`` is named relative to that root (``sync:handbook``), any other folder by its resolved
absolute path (``sync:/data/handbook``), and a folder that a scheduled ``sources`` entry of the same KB
mirrors by that entry (``schedule:NAME``, NAME defaulting to the folder's path) — so a manual sync of a
scheduled folder and the schedule itself share their documents instead of refusing each other's files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.planning import UPLOAD
from rag.config import SyncSource
from rag.store.catalog import Catalog

__all__ = ["UPLOAD", "OriginNamer", "migrate_origins"]


@dataclass(frozen=True, slots=True)
class OriginNamer:
    roots: tuple[Path, ...]  # server.sync_roots, resolved
    sources: tuple[SyncSource, ...]
    uploads: Path  # RAG_HOME/uploads

    @classmethod
    def create(cls, roots: Sequence[Path], sources: Sequence[SyncSource], uploads: Path) -> OriginNamer:
        return cls(tuple(_resolve(Path(root)) for root in roots), tuple(sources), _resolve(uploads))

    def for_folder(self, kb: str, folder: Path, root: Path | None = None) -> str:
        """The origin of the documents a sync (or an ingest) of ``folder`` into ``kb`` writes."""
        real = _resolve(folder)
        for source in self.sources:
            if source.kb == kb and _resolve(Path(source.folder)) == real:
                return f"schedule:{source.name or real.as_posix()}"
        for candidate in ([_resolve(root)] if root is not None else list(self.roots)):
            if real == candidate or real.is_relative_to(candidate):
                return f"sync:{real.relative_to(candidate).as_posix()}"
        return f"sync:{real.as_posix()}"

    def legacy(self, kb: str, source: str, path: str | None) -> str:
        """The origin of a document written before origins were recorded, from its recorded source and path."""
        if not path:
            return UPLOAD
        file = Path(path)
        if _resolve(file).is_relative_to(self.uploads / kb):
            return UPLOAD
        # The path is FOLDER/SOURCE: the folder given to the sync or ingest that wrote it.
        folder = file.parent
        parts = Path(source).parts
        if len(parts) <= len(file.parts) and file.parts[-len(parts):] == parts:
            folder = Path(*file.parts[: -len(parts)]) if len(parts) < len(file.parts) else Path("/")
        return self.for_folder(kb, folder)


def migrate_origins(catalog: Catalog, namer: OriginNamer) -> int:
    """Give every document of an older catalog an origin; returns how many were given one (0 once done)."""
    legacy = catalog.documents_without_origin()
    if legacy:
        catalog.set_origins((kb, doc_id, namer.legacy(kb, source, path)) for kb, doc_id, source, path in legacy)
    return len(legacy)


def _resolve(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError):
        return path.expanduser().absolute()

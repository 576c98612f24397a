"""Which server folders a sync may read: the operator's decision, never the caller's.

Over the API and the web UI a folder is synced only when it lies inside one of ``server.sync_roots``
(none by default: folder sync over the network is off). The path is resolved, symlinks included, before
it is compared, and files whose real path leaves the root (symlinks out) are skipped and reported.
Whatever the caller sends, ``RAG_HOME`` (catalog, indexes, other KBs' uploads) and the config file
(which may hold the API keys) are never indexed, by any sync or ingest.

Every refusal that depends on the file system reads the same, so the answer does not tell which paths
exist; only a malformed path (relative, ``~``, a NUL byte, too long) is refused as such.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.discovery import SourceFile
from rag.errors import Forbidden, InvalidInput

# Linux's PATH_MAX; a longer path cannot name a file, so it is malformed rather than absent.
MAX_PATH_BYTES = 4096
OUTSIDE_ROOT = "skipped: its real path is outside the sync root (a symlink out of the folder)"
PROTECTED = "skipped: RAG_HOME and the config file are never indexed"


@dataclass(frozen=True, slots=True)
class FolderPolicy:
    roots: tuple[Path, ...]
    protected: tuple[Path, ...]  # resolved: RAG_HOME (a folder) and the config file

    @classmethod
    def create(cls, roots: Sequence[Path], home: Path, config: Path | None) -> FolderPolicy:
        protected = [home.resolve()]
        if config is not None:
            protected.append(Path(config).expanduser().resolve())
        return cls(tuple(Path(root).expanduser().resolve() for root in roots), tuple(protected))

    @property
    def refusal(self) -> str:
        if not self.roots:
            return ("folder sync over the API and the web UI is off: an operator lists the folders it may read "
                    "in server.sync_roots")
        return "source is not a folder inside server.sync_roots, or it may not be read"

    def check(self, source: str) -> tuple[Path, Path]:
        """The resolved folder a caller asked for and the root it lies in, or a refusal.

        Raises InvalidInput for a malformed path and Forbidden (one message for every case) when the
        folder is outside the roots, missing, not a folder, or RAG_HOME's.
        """
        if "\x00" in source:
            raise InvalidInput("source: a path may not contain a NUL byte")
        if len(os.fsencode(source)) > MAX_PATH_BYTES:
            raise InvalidInput(f"source: a path may be at most {MAX_PATH_BYTES} bytes long")
        if source.startswith("~"):
            raise InvalidInput("source: give an absolute path ('~' is not expanded)")
        given = Path(source)
        if not given.is_absolute():
            raise InvalidInput("source: give an absolute path")
        if not self.roots:
            raise Forbidden(self.refusal)
        try:
            folder = given.resolve()
            is_dir = folder.is_dir()
        except (OSError, RuntimeError):  # a symlink loop, a component too long
            raise Forbidden(self.refusal) from None
        root = next((root for root in self.roots if folder.is_relative_to(root)), None)
        if root is None or not is_dir or self.is_protected(folder):
            raise Forbidden(self.refusal)
        return folder, root

    def is_protected(self, path: Path) -> bool:
        return any(path == guarded or path.is_relative_to(guarded) for guarded in self.protected)

    def split(self, files: list[SourceFile], root: Path | None) -> tuple[list[SourceFile], list[dict[str, str]]]:
        """The files a sync may index, and ``{"path", "error"}`` for each one it skips.

        ``root``: files must really lie inside it (API and UI syncs); ``None``: an operator's folder.
        """
        kept: list[SourceFile] = []
        skipped: list[dict[str, str]] = []
        for file in files:
            try:
                real = file.path.resolve()
            except (OSError, RuntimeError):
                skipped.append({"path": file.source, "error": OUTSIDE_ROOT})
                continue
            if root is not None and not real.is_relative_to(root):
                skipped.append({"path": file.source, "error": OUTSIDE_ROOT})
            elif self.is_protected(real):
                skipped.append({"path": file.source, "error": PROTECTED})
            else:
                kept.append(file)
        return kept, skipped

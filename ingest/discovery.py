"""Find the files to ingest and name each by its path relative to what the user gave."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    source: str  # relative to the folder (or the file's own name when a file was given)
    doc_id: str = ""

    def __post_init__(self) -> None:
        if not self.doc_id:
            object.__setattr__(self, "doc_id", document_id(self.source))


def document_id(source: str) -> str:
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


def discover(paths: list[Path]) -> list[SourceFile]:
    """Files under ``paths`` (recursive), skipping hidden files and folders. Missing paths raise."""
    found: dict[str, SourceFile] = {}
    for given in paths:
        if not given.exists():
            raise FileNotFoundError(f"no such file or folder: {given}")
        if given.is_file():
            found.setdefault(given.name, SourceFile(given, given.name))
            continue
        for path in sorted(given.rglob("*")):
            relative = path.relative_to(given)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            source = relative.as_posix()
            found.setdefault(source, SourceFile(path, source))
    return list(found.values())

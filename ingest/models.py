"""Shapes that flow out of ingest: parsed documents and their chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)
class Section:
    """A run of text from one page under one heading path (e.g. ``"Guide > Install"``)."""

    text: str
    page: int | None = None
    heading: str | None = None
    is_table: bool = False


@dataclass(slots=True)
class ParsedDocument:
    source: str
    sections: list[Section]
    format: str
    title: str | None = None
    path: Path | None = None
    # What was done to read a damaged or misnamed file ("content is PDF, named .doc", ...).
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    ordinal: int
    page: int | None
    heading: str | None
    language: str  # "zh" or "en"
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def index_text(self) -> str:
        """What embedders and BM25 see: the heading path gives a chunk the context of its section."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    @property
    def text_hash(self) -> str:
        return hashlib.sha256(self.index_text.encode("utf-8")).hexdigest()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""What the catalog's repositories return: plain dataclasses (no database rows leave rag/store)."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rag.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class KBInfo:
    name: str
    description: str
    documents: int
    chunks: int
    generation: int
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "documents": self.documents, "chunks": self.chunks}


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    doc_id: str
    source: str
    status: str
    chunks: int
    error: str | None
    format: str
    content_hash: str | None
    size: int
    title: str | None
    path: str | None
    updated_at: float
    note: str | None = None  # how a misnamed or damaged file was read
    origin: str = "upload"  # upload | sync:FOLDER | schedule:NAME
    uploaded_by: str | None = None  # the uploading key's label (origin upload)
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "status": self.status,
            "chunks": self.chunks,
            "error": self.error,
            "format": self.format,
            "size": self.size,
            "title": self.title,
            "updated_at": self.updated_at,
            "note": self.note,
            "origin": self.origin,
            "uploaded_by": self.uploaded_by,
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class ChunkRow:
    id: int
    doc_id: str
    ordinal: int
    text: str
    heading: str | None
    page: int | None
    language: str
    source: str


@dataclass(slots=True)
class StagedDocument:
    """A document whose new chunks are written but not yet visible; made visible by ``commit``."""

    doc_id: str
    source: str
    path: str | None
    format: str
    content_hash: str | None
    size: int
    title: str | None
    chunk_count: int
    error: str | None = None
    note: str | None = None
    origin: str = "upload"
    uploaded_by: str | None = None
    tags: tuple[str, ...] | None = None  # None: keep the document's current tags (none for a new one)

    @property
    def failed(self) -> bool:
        return self.error is not None


MAX_TAGS = 32
MAX_TAG_CHARS = 64


def normalize_tags(tags: Iterable[object]) -> tuple[str, ...]:
    """Tags as stored: stripped, NFC, duplicates dropped (first kept), at most MAX_TAGS of MAX_TAG_CHARS."""
    found: dict[str, None] = {}
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidInput(f"tags must be strings, got {type(tag).__name__}")
        text = unicodedata.normalize("NFC", tag).strip()
        if not text:
            continue
        if len(text) > MAX_TAG_CHARS or any(ch < " " for ch in text):
            raise InvalidInput(f"tag {text[:80]!r}: at most {MAX_TAG_CHARS} printable characters")
        found.setdefault(text, None)
    if len(found) > MAX_TAGS:
        raise InvalidInput(f"a document may carry at most {MAX_TAGS} tags ({len(found)} given)")
    return tuple(found)


def tags_json(tags: Iterable[str]) -> str:
    return json.dumps(list(tags), ensure_ascii=False)

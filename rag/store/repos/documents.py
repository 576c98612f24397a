"""Documents of a KB: their status, origin and tags (their chunks are in rag.store.repos.chunks)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from rag.errors import DocumentNotFound
from rag.store.db import Database
from rag.store.records import DocumentInfo, tags_json

# The columns an export writes and an import restores (rag/backup.py).
DOCUMENT_FIELDS = ("doc_id", "source", "path", "format", "content_hash", "size", "status", "error", "chunks",
                   "title", "updated_at", "note", "origin", "uploaded_by", "tags")


def document_info(row: Any) -> DocumentInfo:
    return DocumentInfo(
        doc_id=row["doc_id"], source=row["source"], status=row["status"], chunks=row["chunks"], error=row["error"],
        format=row["format"], content_hash=row["content_hash"], size=row["size"], title=row["title"],
        path=row["path"], updated_at=row["updated_at"], note=row["note"], origin=row["origin"] or "upload",
        uploaded_by=row["uploaded_by"], tags=tuple(json.loads(row["tags"] or "[]")),
    )


class DocumentRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, kb: str, origin: str | None = None) -> list[DocumentInfo]:
        """The KB's documents by source; with ``origin``, only those of that origin."""
        where = "kb=:kb" if origin is None else "kb=:kb AND origin=:origin"
        with self.db.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT * FROM documents WHERE {where} ORDER BY source"),
                                {"kb": kb, "origin": origin}).mappings().all()
        return [document_info(row) for row in rows]

    def get(self, kb: str, doc_id: str) -> DocumentInfo:
        with self.db.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM documents WHERE kb=:kb AND doc_id=:doc"),
                               {"kb": kb, "doc": doc_id}).mappings().first()
        if row is None:
            raise DocumentNotFound(f"document '{doc_id}' is not in knowledge base '{kb}'")
        return document_info(row)

    def set_tags(self, kb: str, doc_id: str, tags: Iterable[str]) -> DocumentInfo:
        with self.db.transaction() as conn:
            if conn.execute(sa.text("UPDATE documents SET tags=:tags WHERE kb=:kb AND doc_id=:doc"),
                            {"tags": tags_json(tags), "kb": kb, "doc": doc_id}).rowcount == 0:
                raise DocumentNotFound(f"document '{doc_id}' is not in knowledge base '{kb}'")
        return self.get(kb, doc_id)

    def without_origin(self) -> list[tuple[str, str, str, str | None]]:
        """(kb, doc_id, source, path) of documents written before origins were recorded."""
        with self.db.connect() as conn:
            rows = conn.execute(sa.text("SELECT kb, doc_id, source, path FROM documents WHERE origin IS NULL")).all()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    def set_origins(self, origins: Iterable[tuple[str, str, str]]) -> None:
        """Give documents that have none an origin: (kb, doc_id, origin)."""
        params = [{"origin": origin, "kb": kb, "doc": doc_id} for kb, doc_id, origin in origins]
        if not params:
            return
        with self.db.transaction() as conn:
            conn.execute(sa.text("UPDATE documents SET origin=:origin WHERE kb=:kb AND doc_id=:doc AND origin IS NULL"),
                         params)

    def rows(self, kb: str) -> list[dict[str, Any]]:
        """Every document row of ``kb`` as stored (``tags`` a JSON text), for an export."""
        with self.db.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT {', '.join(DOCUMENT_FIELDS)} FROM documents WHERE kb=:kb "
                                        "ORDER BY doc_id"), {"kb": kb}).mappings().all()
        return [dict(row) for row in rows]

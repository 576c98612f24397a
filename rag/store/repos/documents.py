"""Documents of a KB: their status, origin and tags (their chunks are in rag.store.repos.chunks)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from rag.errors import DocumentNotFound
from rag.store.db import Database
from rag.store.db.tables import documents
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
        query = sa.select(documents).where(documents.c.kb == kb).order_by(documents.c.source)
        if origin is not None:
            query = query.where(documents.c.origin == origin)
        with self.db.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [document_info(row) for row in rows]

    def get(self, kb: str, doc_id: str) -> DocumentInfo:
        with self.db.connect() as conn:
            row = conn.execute(sa.select(documents).where(documents.c.kb == kb, documents.c.doc_id == doc_id)
                               ).mappings().first()
        if row is None:
            raise DocumentNotFound(f"document '{doc_id}' is not in knowledge base '{kb}'")
        return document_info(row)

    def set_tags(self, kb: str, doc_id: str, tags: Iterable[str]) -> DocumentInfo:
        with self.db.transaction() as conn:
            if conn.execute(documents.update().where(documents.c.kb == kb, documents.c.doc_id == doc_id)
                            .values(tags=tags_json(tags))).rowcount == 0:
                raise DocumentNotFound(f"document '{doc_id}' is not in knowledge base '{kb}'")
        return self.get(kb, doc_id)

    def without_origin(self) -> list[tuple[str, str, str, str | None]]:
        """(kb, doc_id, source, path) of documents written before origins were recorded."""
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(documents.c.kb, documents.c.doc_id, documents.c.source, documents.c.path)
                                .where(documents.c.origin.is_(None))).all()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    def set_origins(self, origins: Iterable[tuple[str, str, str]]) -> None:
        """Give documents that have none an origin: (kb, doc_id, origin)."""
        params = [{"new_origin": origin, "the_kb": kb, "the_doc": doc_id} for kb, doc_id, origin in origins]
        if not params:
            return
        query = (documents.update()
                 .where(documents.c.kb == sa.bindparam("the_kb"), documents.c.doc_id == sa.bindparam("the_doc"),
                        documents.c.origin.is_(None))
                 .values(origin=sa.bindparam("new_origin")))
        with self.db.transaction() as conn:
            conn.execute(query, params)  # one executemany

    def rows(self, kb: str) -> list[dict[str, Any]]:
        """Every document row of ``kb`` as stored (``tags`` a JSON text), for an export."""
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(*(documents.c[name] for name in DOCUMENT_FIELDS))
                                .where(documents.c.kb == kb).order_by(documents.c.doc_id)).mappings().all()
        return [dict(row) for row in rows]

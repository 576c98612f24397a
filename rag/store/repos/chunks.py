"""Versioned chunks: staging a generation, committing it atomically, and reading a generation's chunks.

A reader at generation G sees the chunks with added_gen <= G and (deleted_gen IS NULL OR deleted_gen > G).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rag.errors import KBExists, KBNotFound
from rag.store.db import Database
from rag.store.records import ChunkRow, StagedDocument, tags_json
from rag.store.repos.documents import DOCUMENT_FIELDS
from rag.types import IndexChunk

CHUNK_FIELDS = ("doc_id", "ordinal", "text", "heading", "page", "language", "text_hash", "tokens")
_VISIBLE = "added_gen<=:gen AND (deleted_gen IS NULL OR deleted_gen>:gen)"
_BATCH = 500  # ids or hashes per IN (...) list

_UPSERT_DOCUMENT = (
    # An upsert, not a replace: a new version keeps the tags it was given (``{tags}``: excluded.tags or tags).
    "INSERT INTO documents(kb, doc_id, source, path, format, content_hash, size, status, error, chunks, title, "
    "updated_at, note, origin, uploaded_by, tags) VALUES (:kb, :doc, :source, :path, :format, :hash, :size, "
    "'indexed', NULL, :chunks, :title, :now, :note, :origin, :by, :tags) "
    "ON CONFLICT(kb, doc_id) DO UPDATE SET source=excluded.source, path=excluded.path, format=excluded.format, "
    "content_hash=excluded.content_hash, size=excluded.size, status='indexed', error=NULL, chunks=excluded.chunks, "
    "title=excluded.title, updated_at=excluded.updated_at, note=excluded.note, origin=excluded.origin, "
    "uploaded_by=excluded.uploaded_by{tags}")

_FAILED_DOCUMENT = (
    "INSERT INTO documents(kb, doc_id, source, path, format, content_hash, size, status, error, chunks, title, "
    "updated_at, note, origin, uploaded_by, tags) VALUES (:kb, :doc, :source, :path, :format, :hash, :size, "
    "'failed', :error, 0, NULL, :now, NULL, :origin, :by, :tags) "
    "ON CONFLICT(kb, doc_id) DO UPDATE SET source=excluded.source, path=excluded.path, format=excluded.format, "
    "content_hash=excluded.content_hash, size=excluded.size, status='failed', error=excluded.error, chunks=0, "
    "title=NULL, updated_at=excluded.updated_at, note=NULL, origin=excluded.origin, "
    "uploaded_by=excluded.uploaded_by, tags=excluded.tags")


def chunk_row(row: Any) -> ChunkRow:
    return ChunkRow(id=row["id"], doc_id=row["doc_id"], ordinal=row["ordinal"], text=row["text"],
                    heading=row["heading"], page=row["page"], language=row["language"], source=row["source"])


class ChunkRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        # SQLite planner hints. INDEXED BY: left to itself SQLite walks chunks_by_gen — every chunk of the
        # generation — for each document, which made staging quadratic in the size of a commit. "+c.kb":
        # look ids up by primary key, not by walking chunks_by_gen (bench_scale hybrid p50 at 100k chunks:
        # 180 ms before, 91 ms after). PostgreSQL's planner needs neither.
        self._by_doc = " INDEXED BY chunks_by_doc" if db.sqlite else ""
        self._plus = "+" if db.sqlite else ""
        by_doc, m = self._by_doc, "?" if db.sqlite else "%s"  # the driver's own parameter style
        self._sql = {
            "insert": "INSERT INTO chunks(kb, doc_id, ordinal, text, heading, page, language, text_hash, tokens, "
                      f"added_gen) VALUES ({', '.join([m] * 10)})",
            "new_ids": f"SELECT id FROM chunks{by_doc} WHERE kb={m} AND doc_id={m} AND added_gen={m} ORDER BY id",
            "drop_staged": f"DELETE FROM chunks{by_doc} WHERE kb={m} AND doc_id={m} AND added_gen={m}",
            "live_ids": f"SELECT id FROM chunks{by_doc} WHERE kb={m} AND doc_id={m} AND added_gen<{m} "
                        "AND deleted_gen IS NULL",
            "tombstone": f"UPDATE chunks{by_doc} SET deleted_gen={m} WHERE kb={m} AND doc_id={m} AND added_gen<{m} "
                         "AND deleted_gen IS NULL",
        }

    def _generation(self, conn: Connection, kb: str) -> int:
        value = conn.execute(sa.text("SELECT generation FROM kbs WHERE name=:kb"), {"kb": kb}).scalar()
        if value is None:
            raise KBNotFound(f"knowledge base '{kb}' does not exist")
        return int(value)

    # -- writing: stage, then commit a generation --------------------------------------------
    def recover(self, kb: str) -> int:
        """Drop what an interrupted writer staged past the committed generation. Returns rows dropped."""
        with self.db.transaction() as conn:
            generation = self._generation(conn, kb)  # a KB deleted while a job of it was queued: KBNotFound
            dropped = conn.execute(sa.text("DELETE FROM chunks WHERE kb=:kb AND added_gen>:gen"),
                                   {"kb": kb, "gen": generation}).rowcount
            conn.execute(sa.text("UPDATE chunks SET deleted_gen=NULL WHERE kb=:kb AND deleted_gen>:gen"),
                         {"kb": kb, "gen": generation})
        return dropped

    def stage_documents(self, kb: str, generation: int, documents: list[tuple[str, list[IndexChunk]]]
                        ) -> tuple[list[int], list[list[int]]]:
        """Stage new versions of documents in one transaction: their current chunks are tombstoned and
        the new ones written, invisible to readers until ``commit(kb, generation, ...)``.

        Returns (ids of the chunks tombstoned, ids of each document's new chunks in order)."""
        dead: list[int] = []
        ids: list[list[int]] = []
        with self.db.transaction() as conn:
            for doc_id, chunks in documents:
                dead.extend(self._tombstone(conn, kb, generation, doc_id))
                ids.append(self._insert(conn, kb, generation, doc_id, chunks))
        return dead, ids

    def stage_chunks(self, kb: str, generation: int, doc_id: str, chunks: Iterable[IndexChunk]) -> list[int]:
        """Write chunks invisible to readers until ``commit(kb, generation, ...)``; returns their ids in order."""
        with self.db.transaction() as conn:
            return self._insert(conn, kb, generation, doc_id, list(chunks))

    def stage_tombstones(self, kb: str, generation: int, doc_ids: Iterable[str]) -> list[int]:
        """Mark the current chunks of these documents as gone from ``generation`` on (still visible before).

        Returns the ids of the chunks so marked."""
        marked: list[int] = []
        with self.db.transaction() as conn:
            for doc_id in doc_ids:
                marked.extend(self._tombstone(conn, kb, generation, doc_id))
        return marked

    # The hot path of staging goes straight to the driver (exec_driver_sql, its own parameter style):
    # through sa.text() staging 10k chunks took 2.5x as long (benchmarks/bench_catalog_stage.py).
    def _insert(self, conn: Connection, kb: str, generation: int, doc_id: str, chunks: list[IndexChunk]) -> list[int]:
        if chunks:
            conn.exec_driver_sql(self._sql["insert"], [
                (kb, doc_id, c.ordinal, c.text, c.heading, c.page, c.language, c.text_hash, " ".join(c.tokens),
                 generation) for c in chunks])
        return [row[0] for row in conn.exec_driver_sql(self._sql["new_ids"], (kb, doc_id, generation))]

    def _tombstone(self, conn: Connection, kb: str, generation: int, doc_id: str) -> list[int]:
        params = (kb, doc_id, generation)
        # A version staged earlier in this same generation is simply replaced.
        conn.exec_driver_sql(self._sql["drop_staged"], params)
        ids = [row[0] for row in conn.exec_driver_sql(self._sql["live_ids"], params)]
        if ids:
            conn.exec_driver_sql(self._sql["tombstone"], (generation, kb, doc_id, generation))
        return ids

    def commit(self, kb: str, generation: int, staged: list[StagedDocument], deleted: list[str]) -> None:
        """Atomically make ``generation`` (chunks and tombstones staged for it) the visible state of ``kb``."""
        now = time.time()
        with self.db.transaction() as conn:
            run: list[dict[str, Any]] = []  # consecutive upserts of one kind, written by one executemany
            for position, doc in enumerate(staged):
                if doc.failed:
                    self._record_failure(conn, kb, doc, now)
                    continue
                run.append({
                    "kb": kb, "doc": doc.doc_id, "source": doc.source, "path": doc.path, "format": doc.format,
                    "hash": doc.content_hash, "size": doc.size, "chunks": doc.chunk_count, "title": doc.title,
                    "now": now, "note": doc.note, "origin": doc.origin, "by": doc.uploaded_by,
                    "tags": tags_json(doc.tags or ())})
                following = staged[position + 1] if position + 1 < len(staged) else None
                if following is None or following.failed or (following.tags is None) != (doc.tags is None):
                    sql = _UPSERT_DOCUMENT.format(tags=", tags=excluded.tags" if doc.tags is not None else "")
                    conn.execute(sa.text(sql), run)
                    run = []
            if deleted:
                conn.execute(sa.text("DELETE FROM documents WHERE kb=:kb AND doc_id=:doc"),
                             [{"kb": kb, "doc": doc_id} for doc_id in deleted])
            conn.execute(sa.text("UPDATE kbs SET generation=:gen WHERE name=:kb"), {"gen": generation, "kb": kb})
            # Readers at the previous generation may still resolve its chunks; older tombstones go.
            conn.execute(sa.text("DELETE FROM chunks WHERE kb=:kb AND deleted_gen IS NOT NULL AND deleted_gen<:gen"),
                         {"kb": kb, "gen": generation})

    @staticmethod
    def _record_failure(conn: Connection, kb: str, doc: StagedDocument, now: float) -> None:
        existing = conn.execute(sa.text("SELECT status, tags FROM documents WHERE kb=:kb AND doc_id=:doc"),
                                {"kb": kb, "doc": doc.doc_id}).mappings().first()
        if existing is not None and existing["status"] == "indexed":
            # Keep the version already indexed; the error says the update failed.
            conn.execute(sa.text("UPDATE documents SET error=:error, updated_at=:now WHERE kb=:kb AND doc_id=:doc"),
                         {"error": f"update failed, previous version kept: {doc.error}", "now": now, "kb": kb,
                          "doc": doc.doc_id})
            return
        tags = tags_json(doc.tags) if doc.tags is not None else (existing["tags"] if existing else "[]")
        conn.execute(sa.text(_FAILED_DOCUMENT), {
            "kb": kb, "doc": doc.doc_id, "source": doc.source, "path": doc.path, "format": doc.format,
            "hash": doc.content_hash, "size": doc.size, "error": doc.error, "now": now, "origin": doc.origin,
            "by": doc.uploaded_by, "tags": tags})

    # -- reading -----------------------------------------------------------------------------
    def visible(self, kb: str, generation: int) -> Iterator[Any]:
        """The chunks of ``generation`` in id order as mappings (``id``, ``doc_id``, ``language``,
        ``text_hash``, ``tokens``), for rebuilding an index; streamed, not all held at once."""
        yield from self.db.stream(sa.text(
            f"SELECT id, doc_id, language, text_hash, tokens FROM chunks WHERE kb=:kb AND {_VISIBLE} ORDER BY id"),
            {"kb": kb, "gen": generation})

    def token_totals(self, kb: str, generation: int) -> tuple[int, int]:
        """(chunks, index tokens) of ``generation``: a token is what ``tokens.split(" ")`` gives, none for ''."""
        with self.db.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN tokens IS NULL OR tokens='' THEN 0 "
                "ELSE LENGTH(tokens) - LENGTH(REPLACE(tokens, ' ', '')) + 1 END), 0) "
                f"FROM chunks WHERE kb=:kb AND {_VISIBLE}"), {"kb": kb, "gen": generation}).one()
        return int(row[0]), int(row[1])

    def of_document(self, kb: str, doc_id: str) -> list[ChunkRow]:
        with self.db.connect() as conn:
            generation = self._generation(conn, kb)
            rows = conn.execute(sa.text(
                "SELECT c.*, d.source FROM chunks c JOIN documents d ON d.kb=c.kb AND d.doc_id=c.doc_id "
                "WHERE c.kb=:kb AND c.doc_id=:doc AND c.added_gen<=:gen AND (c.deleted_gen IS NULL OR c.deleted_gen>:gen) "
                "ORDER BY c.ordinal"), {"kb": kb, "doc": doc_id, "gen": generation}).mappings().all()
        return [chunk_row(row) for row in rows]

    def by_id(self, kb: str, ids: Iterable[int], generation: int) -> dict[int, ChunkRow]:
        """The chunks among ``ids`` that are visible at ``generation`` (the reader's snapshot)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        plus = self._plus
        query = sa.text(
            f"SELECT c.*, d.source FROM chunks c JOIN documents d ON d.kb=c.kb AND d.doc_id=c.doc_id "
            f"WHERE {plus}c.kb=:kb AND c.id IN :ids AND {plus}c.added_gen<=:gen "
            "AND (c.deleted_gen IS NULL OR c.deleted_gen>:gen)").bindparams(sa.bindparam("ids", expanding=True))
        with self.db.connect() as conn:
            rows = conn.execute(query, {"kb": kb, "ids": ids, "gen": generation}).mappings().all()
        return {row["id"]: chunk_row(row) for row in rows}

    def texts_by_hash(self, kb: str, text_hashes: set[str]) -> list[tuple[str, str, str]]:
        """(language, text_hash, index text) for chunks of ``kb`` with these hashes."""
        found: dict[str, tuple[str, str, str]] = {}
        hashes = list(text_hashes)
        query = sa.text("SELECT language, text_hash, heading, text FROM chunks WHERE kb=:kb AND text_hash IN :hashes"
                        ).bindparams(sa.bindparam("hashes", expanding=True))
        with self.db.connect() as conn:
            for start in range(0, len(hashes), _BATCH):
                for row in conn.execute(query, {"kb": kb, "hashes": hashes[start : start + _BATCH]}).mappings():
                    text = f"{row['heading']}\n{row['text']}" if row["heading"] else row["text"]
                    found[row["text_hash"]] = (row["language"], row["text_hash"], text)
        return list(found.values())

    # -- backups (rag/backup.py) ---------------------------------------------------------------
    def rows(self, kb: str) -> Iterator[dict[str, Any]]:
        """The chunks visible at the committed generation, by document and order, for an export."""
        with self.db.connect() as conn:
            generation = self._generation(conn, kb)
        for row in self.db.stream(sa.text(
                f"SELECT {', '.join(CHUNK_FIELDS)} FROM chunks WHERE kb=:kb AND {_VISIBLE} ORDER BY doc_id, ordinal, id"),
                {"kb": kb, "gen": generation}):
            yield dict(row)

    def restore(self, kb: str, documents: list[dict[str, Any]], chunks: Iterable[dict[str, Any]]) -> int:
        """Write an exported KB's rows into the new, empty ``kb`` as its generation 1 (its index is then rebuilt
        from them by the first writer). One transaction: a failed import leaves nothing. Returns the chunk count."""
        insert_document = sa.text(f"INSERT INTO documents(kb, {', '.join(DOCUMENT_FIELDS)}) "
                                  f"VALUES (:kb, {', '.join(':' + name for name in DOCUMENT_FIELDS)})")
        insert_chunk = sa.text(f"INSERT INTO chunks(kb, {', '.join(CHUNK_FIELDS)}, added_gen) "
                               f"VALUES (:kb, {', '.join(':' + name for name in CHUNK_FIELDS)}, 1)")
        count = 0
        with self.db.transaction() as conn:
            if self._generation(conn, kb) != 0 or conn.execute(
                    sa.text("SELECT 1 FROM documents WHERE kb=:kb LIMIT 1"), {"kb": kb}).first():
                raise KBExists(f"knowledge base '{kb}' is not empty: import into a new name (--as NAME)")
            if documents:
                conn.execute(insert_document, [{"kb": kb, **{name: doc.get(name) for name in DOCUMENT_FIELDS}}
                                               for doc in documents])
            batch: list[dict[str, Any]] = []
            for chunk in chunks:
                batch.append({"kb": kb, **{name: chunk.get(name) for name in CHUNK_FIELDS}})
                if len(batch) >= 1000:
                    count += len(batch)
                    conn.execute(insert_chunk, batch)
                    batch = []
            if batch:
                count += len(batch)
                conn.execute(insert_chunk, batch)
            conn.execute(sa.text("UPDATE kbs SET generation=1 WHERE name=:kb"), {"kb": kb})
        return count

    def text_bytes(self, kb: str) -> int:
        """Bytes of the KB's chunk text and tokens in the catalog (its share of the catalog)."""
        size = ("LENGTH(CAST(text AS BLOB)) + LENGTH(CAST(tokens AS BLOB))" if self.db.sqlite
                else "OCTET_LENGTH(text) + OCTET_LENGTH(tokens)")
        with self.db.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT COALESCE(SUM({size}), 0) FROM chunks WHERE kb=:kb"),
                                    {"kb": kb}).scalar_one())

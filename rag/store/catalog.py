"""The knowledge-base catalog in SQLite: KBs, documents, versioned chunks, cached embeddings, jobs."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import DocumentNotFound, InvalidInput, KBExists, KBNotFound
from rag.types import IndexChunk


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


class Catalog:
    """Thread-safe (one connection per thread), multi-process safe (SQLite WAL, busy timeout)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        schema = resources.files("rag.store").joinpath("schema.sql").read_text(encoding="utf-8")
        self.db.executescript(schema)
        self._add_missing_columns("jobs", {"owner": "TEXT", "heartbeat_at": "REAL"})
        self._add_missing_columns("documents", {"note": "TEXT", "origin": "TEXT", "uploaded_by": "TEXT",
                                                "tags": "TEXT NOT NULL DEFAULT '[]'"})
        self._add_missing_columns("embeddings", {"created_at": "REAL"})
        # Here, not in schema.sql: an older catalog has no origin column until the line above adds it.
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name='documents_by_origin'").fetchone():
            self.db.execute("CREATE INDEX IF NOT EXISTS documents_by_origin ON documents (kb, origin)")

    def _add_missing_columns(self, table: str, columns: dict[str, str]) -> None:
        """Catalogs made by an older version gain the columns added since (SQLite has no ADD COLUMN IF NOT EXISTS)."""
        present = {row["name"] for row in self.db.execute(f"PRAGMA table_info({table})")}
        missing = {name: kind for name, kind in columns.items() if name not in present}
        if not missing:
            return  # the usual case: no write lock taken just to open the catalog
        with self._tx() as db:
            present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}  # another process may have won
            for name, kind in missing.items():
                if name not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    # -- connections -------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    def transaction(self) -> _Transaction:
        """A write transaction on this thread's connection, for the repositories sharing the file."""
        return _Transaction(self.db)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- knowledge bases ---------------------------------------------------------------------
    def create_kb(self, name: str, description: str = "") -> KBInfo:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM kbs WHERE name=?", (name,)).fetchone():
                raise KBExists(f"knowledge base '{name}' already exists")
            db.execute("INSERT INTO kbs(name, description, created_at) VALUES (?,?,?)", (name, description, time.time()))
        return self.get_kb(name)

    def kb_exists(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM kbs WHERE name=?", (name,)).fetchone() is not None

    def get_kb(self, name: str) -> KBInfo:
        row = self.db.execute("SELECT * FROM kbs WHERE name=?", (name,)).fetchone()
        if row is None:
            raise KBNotFound(f"knowledge base '{name}' does not exist")
        return self._kb_info(row)

    def list_kbs(self) -> list[KBInfo]:
        rows = self.db.execute("SELECT * FROM kbs ORDER BY name").fetchall()
        return [self._kb_info(row) for row in rows]

    def _kb_info(self, row: sqlite3.Row) -> KBInfo:
        name, generation = row["name"], row["generation"]
        documents = self.db.execute(
            "SELECT COUNT(*) FROM documents WHERE kb=? AND status='indexed'", (name,)
        ).fetchone()[0]
        chunks = self.db.execute(
            "SELECT COUNT(*) FROM chunks WHERE kb=? AND added_gen<=? AND (deleted_gen IS NULL OR deleted_gen>?)",
            (name, generation, generation),
        ).fetchone()[0]
        return KBInfo(name, row["description"], documents, chunks, generation, row["created_at"])

    def delete_kb(self, name: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM kbs WHERE name=?", (name,)).rowcount == 0:
                raise KBNotFound(f"knowledge base '{name}' does not exist")
            db.execute("DELETE FROM chunks WHERE kb=?", (name,))
            db.execute("DELETE FROM documents WHERE kb=?", (name,))

    def generation(self, kb: str) -> int:
        row = self.db.execute("SELECT generation FROM kbs WHERE name=?", (kb,)).fetchone()
        if row is None:
            raise KBNotFound(f"knowledge base '{kb}' does not exist")
        return int(row[0])

    # -- documents ---------------------------------------------------------------------------
    def documents(self, kb: str, origin: str | None = None) -> list[DocumentInfo]:
        """The KB's documents by source; with ``origin``, only those of that origin."""
        if origin is None:
            rows = self.db.execute("SELECT * FROM documents WHERE kb=? ORDER BY source", (kb,)).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM documents WHERE kb=? AND origin=? ORDER BY source",
                                   (kb, origin)).fetchall()
        return [self._document_info(row) for row in rows]

    def set_tags(self, kb: str, doc_id: str, tags: Iterable[str]) -> DocumentInfo:
        with self._tx() as db:
            if db.execute("UPDATE documents SET tags=? WHERE kb=? AND doc_id=?",
                          (_tags_json(tags), kb, doc_id)).rowcount == 0:
                raise DocumentNotFound(f"document '{doc_id}' is not in knowledge base '{kb}'")
        return self.document(kb, doc_id)

    def documents_without_origin(self) -> list[tuple[str, str, str, str | None]]:
        """(kb, doc_id, source, path) of documents written before origins were recorded."""
        rows = self.db.execute("SELECT kb, doc_id, source, path FROM documents WHERE origin IS NULL").fetchall()
        return [(row["kb"], row["doc_id"], row["source"], row["path"]) for row in rows]

    def set_origins(self, origins: Iterable[tuple[str, str, str]]) -> None:
        """Give documents that have none an origin: (kb, doc_id, origin)."""
        with self._tx() as db:
            db.executemany("UPDATE documents SET origin=? WHERE kb=? AND doc_id=? AND origin IS NULL",
                           [(origin, kb, doc_id) for kb, doc_id, origin in origins])

    def document(self, kb: str, doc_id: str) -> DocumentInfo:
        row = self.db.execute("SELECT * FROM documents WHERE kb=? AND doc_id=?", (kb, doc_id)).fetchone()
        if row is None:
            raise DocumentNotFound(f"document '{doc_id}' is not in knowledge base '{kb}'")
        return self._document_info(row)

    @staticmethod
    def _document_info(row: sqlite3.Row) -> DocumentInfo:
        return DocumentInfo(
            doc_id=row["doc_id"],
            source=row["source"],
            status=row["status"],
            chunks=row["chunks"],
            error=row["error"],
            format=row["format"],
            content_hash=row["content_hash"],
            size=row["size"],
            title=row["title"],
            path=row["path"],
            updated_at=row["updated_at"],
            note=row["note"],
            origin=row["origin"] or "upload",
            uploaded_by=row["uploaded_by"],
            tags=tuple(json.loads(row["tags"] or "[]")),
        )

    def document_chunks(self, kb: str, doc_id: str) -> list[ChunkRow]:
        generation = self.generation(kb)
        rows = self.db.execute(
            "SELECT c.*, d.source FROM chunks c JOIN documents d ON d.kb=c.kb AND d.doc_id=c.doc_id "
            "WHERE c.kb=? AND c.doc_id=? AND c.added_gen<=? AND (c.deleted_gen IS NULL OR c.deleted_gen>?) "
            "ORDER BY c.ordinal",
            (kb, doc_id, generation, generation),
        ).fetchall()
        return [self._chunk_row(row) for row in rows]

    # -- backups (rag/backup.py) ---------------------------------------------------------------
    DOCUMENT_FIELDS = ("doc_id", "source", "path", "format", "content_hash", "size", "status", "error", "chunks",
                       "title", "updated_at", "note", "origin", "uploaded_by", "tags")
    CHUNK_FIELDS = ("doc_id", "ordinal", "text", "heading", "page", "language", "text_hash", "tokens")

    def document_rows(self, kb: str) -> list[dict[str, Any]]:
        """Every document row of ``kb`` as stored (``tags`` a JSON text), for an export."""
        fields = ", ".join(self.DOCUMENT_FIELDS)
        rows = self.db.execute(f"SELECT {fields} FROM documents WHERE kb=? ORDER BY doc_id", (kb,)).fetchall()
        return [dict(row) for row in rows]

    def chunk_rows(self, kb: str) -> Iterator[dict[str, Any]]:
        """The chunks visible at the committed generation, by document and order, for an export."""
        generation = self.generation(kb)
        fields = ", ".join(self.CHUNK_FIELDS)
        for row in self.db.execute(
            f"SELECT {fields} FROM chunks WHERE kb=? AND added_gen<=? AND (deleted_gen IS NULL OR deleted_gen>?) "
            "ORDER BY doc_id, ordinal, id", (kb, generation, generation)):
            yield dict(row)

    def restore_rows(self, kb: str, documents: list[dict[str, Any]], chunks: Iterable[dict[str, Any]]) -> int:
        """Write an exported KB's rows into the new, empty ``kb`` as its generation 1 (its index is then rebuilt
        from them by the first writer). One transaction: a failed import leaves nothing. Returns the chunk count."""
        doc_fields = ", ".join(self.DOCUMENT_FIELDS)
        chunk_fields = ", ".join(self.CHUNK_FIELDS)
        count = 0
        with self._tx() as db:
            if db.execute("SELECT generation FROM kbs WHERE name=?", (kb,)).fetchone()[0] != 0 or db.execute(
                    "SELECT 1 FROM documents WHERE kb=? LIMIT 1", (kb,)).fetchone():
                raise KBExists(f"knowledge base '{kb}' is not empty: import into a new name (--as NAME)")
            db.executemany(
                f"INSERT INTO documents(kb, {doc_fields}) VALUES (?{',?' * len(self.DOCUMENT_FIELDS)})",
                [(kb, *(doc.get(name) for name in self.DOCUMENT_FIELDS)) for doc in documents])
            batch: list[tuple[Any, ...]] = []
            for chunk in chunks:
                batch.append((kb, *(chunk.get(name) for name in self.CHUNK_FIELDS), 1))
                if len(batch) >= 1000:
                    count += len(batch)
                    db.executemany(f"INSERT INTO chunks(kb, {chunk_fields}, added_gen) "
                                   f"VALUES (?{',?' * len(self.CHUNK_FIELDS)},?)", batch)
                    batch = []
            if batch:
                count += len(batch)
                db.executemany(f"INSERT INTO chunks(kb, {chunk_fields}, added_gen) "
                               f"VALUES (?{',?' * len(self.CHUNK_FIELDS)},?)", batch)
            db.execute("UPDATE kbs SET generation=1 WHERE name=?", (kb,))
        return count

    def embedding_rows(self, text_hashes: list[str]) -> Iterator[tuple[str, str, bytes]]:
        """(model, text_hash, float32 bytes) of every cached vector of these texts, in any model."""
        for start in range(0, len(text_hashes), 500):
            batch = text_hashes[start : start + 500]
            marks = ",".join("?" * len(batch))
            for row in self.db.execute(
                    f"SELECT model, text_hash, vector FROM embeddings WHERE text_hash IN ({marks})", batch):
                yield row[0], row[1], bytes(row[2])

    # -- writing: stage, then commit a generation --------------------------------------------
    def recover(self, kb: str) -> int:
        """Drop what an interrupted writer staged past the committed generation. Returns rows dropped."""
        with self._tx() as db:
            row = db.execute("SELECT generation FROM kbs WHERE name=?", (kb,)).fetchone()
            if row is None:  # deleted while a job of it was queued: a clear error, not a TypeError
                raise KBNotFound(f"knowledge base '{kb}' does not exist")
            generation = row[0]
            dropped = db.execute("DELETE FROM chunks WHERE kb=? AND added_gen>?", (kb, generation)).rowcount
            db.execute("UPDATE chunks SET deleted_gen=NULL WHERE kb=? AND deleted_gen>?", (kb, generation))
        return dropped

    def stage_documents(
        self, kb: str, generation: int, documents: list[tuple[str, list[IndexChunk]]]
    ) -> tuple[list[int], list[list[int]]]:
        """Stage new versions of documents in one transaction: their current chunks are tombstoned and
        the new ones written, invisible to readers until ``commit(kb, generation, ...)``.

        Returns (ids of the chunks tombstoned, ids of each document's new chunks in order)."""
        dead: list[int] = []
        ids: list[list[int]] = []
        with self._tx() as db:
            for doc_id, chunks in documents:
                dead.extend(self._tombstone(db, kb, generation, doc_id))
                ids.append(self._insert(db, kb, generation, doc_id, chunks))
        return dead, ids

    def stage_chunks(self, kb: str, generation: int, doc_id: str, chunks: Iterable[IndexChunk]) -> list[int]:
        """Write chunks invisible to readers until ``commit(kb, generation, ...)``; returns their ids in order."""
        with self._tx() as db:
            return self._insert(db, kb, generation, doc_id, list(chunks))

    def stage_tombstones(self, kb: str, generation: int, doc_ids: Iterable[str]) -> list[int]:
        """Mark the current chunks of these documents as gone from ``generation`` on (still visible before).

        Returns the ids of the chunks so marked."""
        marked: list[int] = []
        with self._tx() as db:
            for doc_id in doc_ids:
                marked.extend(self._tombstone(db, kb, generation, doc_id))
        return marked

    # INDEXED BY: left to itself SQLite walks chunks_by_gen — every chunk of the generation — for each
    # document, which made staging quadratic in the size of a commit.
    @staticmethod
    def _insert(db: sqlite3.Connection, kb: str, generation: int, doc_id: str, chunks: list[IndexChunk]) -> list[int]:
        db.executemany(
            "INSERT INTO chunks(kb, doc_id, ordinal, text, heading, page, language, text_hash, tokens, added_gen) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(kb, doc_id, c.ordinal, c.text, c.heading, c.page, c.language, c.text_hash, " ".join(c.tokens),
              generation) for c in chunks],
        )
        rows = db.execute(
            "SELECT id FROM chunks INDEXED BY chunks_by_doc WHERE kb=? AND doc_id=? AND added_gen=? ORDER BY id",
            (kb, doc_id, generation),
        ).fetchall()
        return [row[0] for row in rows]

    @staticmethod
    def _tombstone(db: sqlite3.Connection, kb: str, generation: int, doc_id: str) -> list[int]:
        # A version staged earlier in this same generation is simply replaced.
        db.execute("DELETE FROM chunks INDEXED BY chunks_by_doc WHERE kb=? AND doc_id=? AND added_gen=?",
                   (kb, doc_id, generation))
        rows = db.execute(
            "SELECT id FROM chunks INDEXED BY chunks_by_doc WHERE kb=? AND doc_id=? AND added_gen<? "
            "AND deleted_gen IS NULL",
            (kb, doc_id, generation),
        ).fetchall()
        db.execute(
            "UPDATE chunks INDEXED BY chunks_by_doc SET deleted_gen=? WHERE kb=? AND doc_id=? AND added_gen<? "
            "AND deleted_gen IS NULL",
            (generation, kb, doc_id, generation),
        )
        return [row[0] for row in rows]

    def commit(self, kb: str, generation: int, staged: list[StagedDocument], deleted: list[str]) -> None:
        """Atomically make ``generation`` (chunks and tombstones staged for it) the visible state of ``kb``."""
        now = time.time()
        with self._tx() as db:
            for doc in staged:
                if doc.failed:
                    self._record_failure(db, kb, doc, now)
                    continue
                # An upsert, not INSERT OR REPLACE: a new version keeps the tags it was given.
                db.execute(
                    "INSERT INTO documents(kb, doc_id, source, path, format, content_hash, size, status, "
                    "error, chunks, title, updated_at, note, origin, uploaded_by, tags) "
                    "VALUES (?,?,?,?,?,?,?,'indexed',NULL,?,?,?,?,?,?,?) "
                    "ON CONFLICT(kb, doc_id) DO UPDATE SET source=excluded.source, path=excluded.path, "
                    "format=excluded.format, content_hash=excluded.content_hash, size=excluded.size, "
                    "status='indexed', error=NULL, chunks=excluded.chunks, title=excluded.title, "
                    "updated_at=excluded.updated_at, note=excluded.note, origin=excluded.origin, "
                    "uploaded_by=excluded.uploaded_by, tags=" + ("excluded.tags" if doc.tags is not None else "tags"),
                    (kb, doc.doc_id, doc.source, doc.path, doc.format, doc.content_hash, doc.size,
                     doc.chunk_count, doc.title, now, doc.note, doc.origin, doc.uploaded_by,
                     _tags_json(doc.tags or ())),
                )
            for doc_id in deleted:
                db.execute("DELETE FROM documents WHERE kb=? AND doc_id=?", (kb, doc_id))
            db.execute("UPDATE kbs SET generation=? WHERE name=?", (generation, kb))
            # Readers at the previous generation may still resolve its chunks; older tombstones go.
            db.execute(
                "DELETE FROM chunks WHERE kb=? AND deleted_gen IS NOT NULL AND deleted_gen<?", (kb, generation)
            )

    @staticmethod
    def _record_failure(db: sqlite3.Connection, kb: str, doc: StagedDocument, now: float) -> None:
        existing = db.execute("SELECT status, tags FROM documents WHERE kb=? AND doc_id=?",
                              (kb, doc.doc_id)).fetchone()
        if existing is not None and existing["status"] == "indexed":
            # Keep the version already indexed; the error says the update failed.
            db.execute(
                "UPDATE documents SET error=?, updated_at=? WHERE kb=? AND doc_id=?",
                (f"update failed, previous version kept: {doc.error}", now, kb, doc.doc_id),
            )
            return
        tags = _tags_json(doc.tags) if doc.tags is not None else (existing["tags"] if existing else "[]")
        db.execute(
            "INSERT OR REPLACE INTO documents(kb, doc_id, source, path, format, content_hash, size, status, error, "
            "chunks, title, updated_at, origin, uploaded_by, tags) VALUES (?,?,?,?,?,?,?,'failed',?,0,NULL,?,?,?,?)",
            (kb, doc.doc_id, doc.source, doc.path, doc.format, doc.content_hash, doc.size, doc.error, now,
             doc.origin, doc.uploaded_by, tags),
        )

    # -- reading chunks ----------------------------------------------------------------------
    def visible_chunks(self, kb: str, generation: int) -> Iterator[sqlite3.Row]:
        yield from self.db.execute(
            "SELECT id, doc_id, language, text_hash, tokens FROM chunks "
            "WHERE kb=? AND added_gen<=? AND (deleted_gen IS NULL OR deleted_gen>?) ORDER BY id",
            (kb, generation, generation),
        )

    def chunks_by_id(self, kb: str, ids: Iterable[int], generation: int) -> dict[int, ChunkRow]:
        """The chunks among ``ids`` that are visible at ``generation`` (the reader's snapshot)."""
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT c.*, d.source FROM chunks c JOIN documents d ON d.kb=c.kb AND d.doc_id=c.doc_id "
            # "+c.kb", "+c.added_gen": look the ids up by primary key. Left to itself SQLite walks
            # chunks_by_gen, every chunk of the KB, on each search (bench_scale hybrid p50 at 100k chunks: 180 ms before, 91 ms after).
            f"WHERE +c.kb=? AND c.id IN ({marks}) AND +c.added_gen<=? AND (c.deleted_gen IS NULL OR c.deleted_gen>?)",
            (kb, *ids, generation, generation),
        ).fetchall()
        return {row["id"]: self._chunk_row(row) for row in rows}

    def chunk_texts_by_hash(self, kb: str, text_hashes: set[str]) -> list[tuple[str, str, str]]:
        """(language, text_hash, index text) for chunks of ``kb`` with these hashes."""
        found: dict[str, tuple[str, str, str]] = {}
        hashes = list(text_hashes)
        for start in range(0, len(hashes), 500):
            batch = hashes[start : start + 500]
            marks = ",".join("?" * len(batch))
            for row in self.db.execute(
                f"SELECT language, text_hash, heading, text FROM chunks WHERE kb=? AND text_hash IN ({marks})",
                (kb, *batch),
            ):
                text = f"{row['heading']}\n{row['text']}" if row["heading"] else row["text"]
                found[row["text_hash"]] = (row["language"], row["text_hash"], text)
        return list(found.values())

    @staticmethod
    def _chunk_row(row: sqlite3.Row) -> ChunkRow:
        return ChunkRow(
            id=row["id"],
            doc_id=row["doc_id"],
            ordinal=row["ordinal"],
            text=row["text"],
            heading=row["heading"],
            page=row["page"],
            language=row["language"],
            source=row["source"],
        )

    # -- embeddings cache --------------------------------------------------------------------
    def cached_embeddings(self, model: str, text_hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(text_hashes), 500):
            batch = text_hashes[start : start + 500]
            marks = ",".join("?" * len(batch))
            for row in self.db.execute(
                f"SELECT text_hash, vector FROM embeddings WHERE model=? AND text_hash IN ({marks})", (model, *batch)
            ):
                found[row[0]] = np.frombuffer(row[1], dtype=np.float32)
        return found

    def store_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO embeddings(model, text_hash, vector, created_at) VALUES (?,?,?,?)",
                [(model, h, np.asarray(v, dtype=np.float32).tobytes(), now) for h, v in vectors.items()],
            )

    def kb_text_bytes(self, kb: str) -> int:
        """Bytes of the KB's chunk text and tokens in the catalog (its share of the catalog file)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(LENGTH(CAST(text AS BLOB)) + LENGTH(CAST(tokens AS BLOB))), 0) FROM chunks WHERE kb=?",
            (kb,)).fetchone()
        return int(row[0])

    def vacuum(self) -> None:
        """Rewrite the catalog file without its free pages (``rag gc --vacuum``), and truncate the WAL."""
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def file_bytes(self) -> int:
        """Bytes of the catalog file and its write-ahead log."""
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def embedding_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def unused_embedding_count(self) -> int:
        """Cached vectors whose text no live or staged chunk of any KB has."""
        return int(self.db.execute(f"SELECT COUNT(*) FROM embeddings WHERE {_UNUSED}").fetchone()[0])

    def drop_unused_embeddings(self, keep: int) -> int:
        """Delete the cached vectors no live or staged chunk uses, except the ``keep`` newest (a re-added
        document, or a reverted edit, then needs no embedding). Returns the rows deleted.

        A writer stores a batch's vectors just before it stages the chunks; one deleted in between is
        embedded again when the segment is built (``writer._vectors``), so this never loses data."""
        with self._tx() as db:
            return db.execute(
                f"DELETE FROM embeddings WHERE (model, text_hash) IN (SELECT model, text_hash FROM embeddings "
                f"WHERE {_UNUSED} ORDER BY created_at IS NULL, created_at DESC LIMIT -1 OFFSET ?)",
                (max(keep, 0),),
            ).rowcount


# Tombstoned chunks do not count: readers of the previous generation only need their tokens and ids.
# NOT IN over a subquery: SQLite builds one temporary index of the live hashes, so the sweep is linear.
_UNUSED = "text_hash NOT IN (SELECT text_hash FROM chunks WHERE deleted_gen IS NULL)"

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


def _tags_json(tags: Iterable[str]) -> str:
    return json.dumps(list(tags), ensure_ascii=False)


class _Transaction:
    """``with catalog._tx() as db:`` — BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")

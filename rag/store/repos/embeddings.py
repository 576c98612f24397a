"""The embedding cache: vectors by (model, text hash), shared by every KB."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import sqlalchemy as sa

from rag.store.db import Database

_BATCH = 500
# Tombstoned chunks do not count: readers of the previous generation only need their tokens and ids.
# NOT IN over a subquery: SQLite builds one temporary index of the live hashes, so the sweep is linear.
_UNUSED = "text_hash NOT IN (SELECT text_hash FROM chunks WHERE deleted_gen IS NULL)"


class EmbeddingRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def cached(self, model: str, text_hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        query = sa.text("SELECT text_hash, vector FROM embeddings WHERE model=:model AND text_hash IN :hashes"
                        ).bindparams(sa.bindparam("hashes", expanding=True))
        with self.db.connect() as conn:
            for start in range(0, len(text_hashes), _BATCH):
                for text_hash, vector in conn.execute(
                        query, {"model": model, "hashes": text_hashes[start : start + _BATCH]}):
                    found[text_hash] = np.frombuffer(vector, dtype=np.float32)
        return found

    def store(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                sa.text("INSERT INTO embeddings(model, text_hash, vector, created_at) VALUES (:model, :hash, :vector, "
                        ":now) ON CONFLICT(model, text_hash) DO NOTHING"),
                [{"model": model, "hash": h, "vector": np.asarray(v, dtype=np.float32).tobytes(), "now": now}
                 for h, v in vectors.items()])

    def rows(self, text_hashes: list[str]) -> Iterator[tuple[str, str, bytes]]:
        """(model, text_hash, float32 bytes) of every cached vector of these texts, in any model."""
        query = sa.text("SELECT model, text_hash, vector FROM embeddings WHERE text_hash IN :hashes"
                        ).bindparams(sa.bindparam("hashes", expanding=True))
        with self.db.connect() as conn:
            for start in range(0, len(text_hashes), _BATCH):
                for row in conn.execute(query, {"hashes": text_hashes[start : start + _BATCH]}).all():
                    yield row[0], row[1], bytes(row[2])

    def count(self) -> int:
        with self.db.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM embeddings")).scalar_one())

    def unused_count(self) -> int:
        """Cached vectors whose text no live or staged chunk of any KB has."""
        with self.db.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM embeddings WHERE {_UNUSED}")).scalar_one())

    def drop_unused(self, keep: int) -> int:
        """Delete the cached vectors no live or staged chunk uses, except the ``keep`` newest (a re-added
        document, or a reverted edit, then needs no embedding). Returns the rows deleted.

        A writer stores a batch's vectors just before it stages the chunks; one deleted in between is
        embedded again when the segment is built (``writer._vectors``), so this never loses data."""
        everything = "LIMIT -1 OFFSET :keep" if self.db.sqlite else "OFFSET :keep"  # PostgreSQL: no LIMIT -1
        with self.db.transaction() as conn:
            return conn.execute(sa.text(
                f"DELETE FROM embeddings WHERE (model, text_hash) IN (SELECT model, text_hash FROM embeddings "
                f"WHERE {_UNUSED} ORDER BY created_at IS NULL, created_at DESC {everything})"),
                {"keep": max(keep, 0)}).rowcount

"""Knowledge bases: their names, descriptions and committed generation."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rag.errors import KBExists, KBNotFound
from rag.store.db import Database
from rag.store.db.tables import chunks, documents, kbs, visible_at
from rag.store.records import KBInfo

# Built once: a reader asks for its KB's generation on every search, and SQLAlchemy caches the compiled SQL
# of a statement object it has seen (building the statement per call cost about as much as running it).
_NAME, _GEN = sa.bindparam("name"), sa.bindparam("gen")
_EXISTS = sa.select(kbs.c.name).where(kbs.c.name == _NAME)
_ONE = sa.select(kbs).where(kbs.c.name == _NAME)
_ALL = sa.select(kbs).order_by(kbs.c.name)
_GENERATION = sa.select(kbs.c.generation).where(kbs.c.name == _NAME)
_INDEXED = sa.select(sa.func.count()).select_from(documents).where(documents.c.kb == _NAME,
                                                                  documents.c.status == "indexed")
_VISIBLE = sa.select(sa.func.count()).select_from(chunks).where(chunks.c.kb == _NAME, visible_at(_GEN))


class KBRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, description: str = "") -> KBInfo:
        with self.db.transaction() as conn:
            if conn.execute(_EXISTS, {"name": name}).first():
                raise KBExists(f"knowledge base '{name}' already exists")
            conn.execute(kbs.insert().values(name=name, description=description, created_at=time.time()))
        return self.get(name)

    def exists(self, name: str) -> bool:
        with self.db.connect() as conn:
            return conn.execute(_EXISTS, {"name": name}).first() is not None

    def get(self, name: str) -> KBInfo:
        with self.db.connect() as conn:
            row = conn.execute(_ONE, {"name": name}).mappings().first()
            if row is None:
                raise KBNotFound(f"knowledge base '{name}' does not exist")
            return self._info(conn, row)

    def list(self) -> list[KBInfo]:
        with self.db.connect() as conn:
            rows = conn.execute(_ALL).mappings().all()
            return [self._info(conn, row) for row in rows]

    @staticmethod
    def _info(conn: Connection, row: Any) -> KBInfo:
        name, generation = row["name"], row["generation"]
        indexed = conn.execute(_INDEXED, {"name": name}).scalar_one()
        visible = conn.execute(_VISIBLE, {"name": name, "gen": generation}).scalar_one()
        return KBInfo(name, row["description"], int(indexed), int(visible), generation, row["created_at"])

    def delete(self, name: str) -> None:
        with self.db.transaction() as conn:
            if conn.execute(kbs.delete().where(kbs.c.name == name)).rowcount == 0:
                raise KBNotFound(f"knowledge base '{name}' does not exist")
            conn.execute(chunks.delete().where(chunks.c.kb == name))
            conn.execute(documents.delete().where(documents.c.kb == name))

    def generation(self, kb: str) -> int:
        with self.db.connect() as conn:
            value = conn.execute(_GENERATION, {"name": kb}).scalar()
        if value is None:
            raise KBNotFound(f"knowledge base '{kb}' does not exist")
        return int(value)

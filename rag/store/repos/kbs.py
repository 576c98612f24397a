"""Knowledge bases: their names, descriptions and committed generation."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rag.errors import KBExists, KBNotFound
from rag.store.db import Database
from rag.store.records import KBInfo

_VISIBLE = "added_gen<=:gen AND (deleted_gen IS NULL OR deleted_gen>:gen)"


class KBRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, description: str = "") -> KBInfo:
        with self.db.transaction() as conn:
            if conn.execute(sa.text("SELECT 1 FROM kbs WHERE name=:name"), {"name": name}).first():
                raise KBExists(f"knowledge base '{name}' already exists")
            conn.execute(sa.text("INSERT INTO kbs(name, description, created_at) VALUES (:name, :description, :now)"),
                         {"name": name, "description": description, "now": time.time()})
        return self.get(name)

    def exists(self, name: str) -> bool:
        with self.db.connect() as conn:
            return conn.execute(sa.text("SELECT 1 FROM kbs WHERE name=:name"), {"name": name}).first() is not None

    def get(self, name: str) -> KBInfo:
        with self.db.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM kbs WHERE name=:name"), {"name": name}).mappings().first()
            if row is None:
                raise KBNotFound(f"knowledge base '{name}' does not exist")
            return self._info(conn, row)

    def list(self) -> list[KBInfo]:
        with self.db.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM kbs ORDER BY name")).mappings().all()
            return [self._info(conn, row) for row in rows]

    @staticmethod
    def _info(conn: Connection, row: Any) -> KBInfo:
        name, generation = row["name"], row["generation"]
        documents = conn.execute(sa.text("SELECT COUNT(*) FROM documents WHERE kb=:kb AND status='indexed'"),
                                 {"kb": name}).scalar_one()
        chunks = conn.execute(sa.text(f"SELECT COUNT(*) FROM chunks WHERE kb=:kb AND {_VISIBLE}"),
                              {"kb": name, "gen": generation}).scalar_one()
        return KBInfo(name, row["description"], int(documents), int(chunks), generation, row["created_at"])

    def delete(self, name: str) -> None:
        with self.db.transaction() as conn:
            if conn.execute(sa.text("DELETE FROM kbs WHERE name=:kb"), {"kb": name}).rowcount == 0:
                raise KBNotFound(f"knowledge base '{name}' does not exist")
            conn.execute(sa.text("DELETE FROM chunks WHERE kb=:kb"), {"kb": name})
            conn.execute(sa.text("DELETE FROM documents WHERE kb=:kb"), {"kb": name})

    def generation(self, kb: str) -> int:
        with self.db.connect() as conn:
            value = conn.execute(sa.text("SELECT generation FROM kbs WHERE name=:kb"), {"kb": kb}).scalar()
        if value is None:
            raise KBNotFound(f"knowledge base '{kb}' does not exist")
        return int(value)

"""The catalog's one database layer: SQLAlchemy Core over SQLite (the embedded default) or PostgreSQL."""

from rag.store.db.engine import Database, mask_url

__all__ = ["Database", "mask_url"]

"""Alembic migrations of the catalog schema (run on open by rag.store.db.migrate; shipped in the wheel)."""

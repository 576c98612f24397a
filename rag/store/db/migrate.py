"""Bring a catalog's schema to the newest Alembic revision when it is opened.

The usual open finds ``alembic_version`` at ``HEAD`` with one query and imports nothing more. Otherwise
(a new catalog, one made before migrations, or an older revision) Alembic runs the scripts in
``rag/store/migrations`` under a lock — a file lock beside a SQLite catalog, an advisory lock on
PostgreSQL — so replicas or processes opening the same catalog at once migrate it once.
"""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa
from filelock import FileLock

from rag.store.db.advisory import AdvisoryLock
from rag.store.db.engine import Database

HEAD = "0001"  # the newest revision in rag/store/migrations/versions (tests/test_catalog_migrations.py checks)


def current_revision(db: Database) -> str | None:
    with db.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(db: Database) -> None:
    if current_revision(db) == HEAD:
        return
    if db.path is not None:
        with FileLock(str(db.path.with_name(db.path.name + ".migrate.lock"))):
            _run(db)
    else:
        with AdvisoryLock(db, "rag-catalog-migration"):
            _run(db)


def _run(db: Database) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("rag.store").joinpath("migrations")))
    with db.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")

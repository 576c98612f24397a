"""The catalog's tables as SQLAlchemy Core objects, for the repositories that build their queries with Core.

The schema itself is made and changed by the Alembic revisions (rag/store/migrations); these mirror the
tables' columns as the newest revision leaves them (tests/test_catalog_migrations.py checks that they do, on
both databases). Types matter only for binding values; constraints and indexes live in the revisions.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

kbs = sa.Table(
    "kbs", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("created_at", sa.Double),
    sa.Column("generation", sa.Integer),
)

documents = sa.Table(
    "documents", metadata,
    sa.Column("kb", sa.Text, primary_key=True),
    sa.Column("doc_id", sa.Text, primary_key=True),
    *(sa.Column(name, sa.Text) for name in ("source", "path", "format", "content_hash")),
    sa.Column("size", sa.BigInteger),
    sa.Column("status", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("chunks", sa.Integer),
    sa.Column("title", sa.Text),
    sa.Column("updated_at", sa.Double),
    *(sa.Column(name, sa.Text) for name in ("note", "origin", "uploaded_by", "tags")),
)

chunks = sa.Table(
    "chunks", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("kb", sa.Text),
    sa.Column("doc_id", sa.Text),
    sa.Column("ordinal", sa.Integer),
    sa.Column("text", sa.Text),
    sa.Column("heading", sa.Text),
    sa.Column("page", sa.Integer),
    sa.Column("language", sa.Text),
    sa.Column("text_hash", sa.Text),
    sa.Column("tokens", sa.Text),
    sa.Column("added_gen", sa.Integer),
    sa.Column("deleted_gen", sa.Integer),
)


def visible_at(generation: int | sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    """The chunks a reader at ``generation`` sees: added by then and not yet deleted."""
    return sa.and_(chunks.c.added_gen <= generation,
                   sa.or_(chunks.c.deleted_gen.is_(None), chunks.c.deleted_gen > generation))

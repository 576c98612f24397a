"""The catalog schema as of the first Alembic revision; adopts catalogs made before migrations existed.

A catalog written by an older version has these tables without ``alembic_version`` and perhaps without
the columns added since (they were added on open by ``ALTER TABLE``): this revision creates what is
missing and adds the missing columns, so old and new catalogs end in the same schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Timestamps are seconds since the epoch: double precision (PostgreSQL's REAL is 4 bytes).
_TIME = sa.Double
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid


def _tables(meta: sa.MetaData) -> list[sa.Table]:
    return [
        sa.Table(
            "kbs", meta,
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("description", sa.Text, nullable=False, server_default=""),
            sa.Column("created_at", _TIME, nullable=False),
            sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        ),
        sa.Table(
            "documents", meta,
            sa.Column("kb", sa.Text, sa.ForeignKey("kbs.name", ondelete="CASCADE"), primary_key=True),
            sa.Column("doc_id", sa.Text, primary_key=True),
            sa.Column("source", sa.Text, nullable=False),
            sa.Column("path", sa.Text),
            sa.Column("format", sa.Text, nullable=False, server_default=""),
            sa.Column("content_hash", sa.Text),
            sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("status", sa.Text, nullable=False),  # indexed | failed
            sa.Column("error", sa.Text),
            sa.Column("chunks", sa.Integer, nullable=False, server_default="0"),
            sa.Column("title", sa.Text),
            sa.Column("updated_at", _TIME, nullable=False),
            sa.Column("note", sa.Text),  # how a misnamed or damaged file was read
            sa.Column("origin", sa.Text),  # upload | sync:FOLDER | schedule:NAME
            sa.Column("uploaded_by", sa.Text),
            sa.Column("tags", sa.Text, nullable=False, server_default="[]"),  # JSON list of strings
        ),
        sa.Table(
            # Versioned by generation: a reader at G sees added_gen <= G and (deleted_gen IS NULL OR deleted_gen > G).
            "chunks", meta,
            sa.Column("id", _ID, primary_key=True, autoincrement=True),
            sa.Column("kb", sa.Text, nullable=False),
            sa.Column("doc_id", sa.Text, nullable=False),
            sa.Column("ordinal", sa.Integer, nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("heading", sa.Text),
            sa.Column("page", sa.Integer),
            sa.Column("language", sa.Text, nullable=False),
            sa.Column("text_hash", sa.Text, nullable=False),
            sa.Column("tokens", sa.Text, nullable=False),  # BM25 tokens, space-separated
            sa.Column("added_gen", sa.Integer, nullable=False),
            sa.Column("deleted_gen", sa.Integer),
            sqlite_autoincrement=True,  # ids are never reused: the index files name chunks by id
        ),
        sa.Table(
            "embeddings", meta,
            sa.Column("model", sa.Text, primary_key=True),
            sa.Column("text_hash", sa.Text, primary_key=True),
            sa.Column("vector", sa.LargeBinary, nullable=False),  # float32, L2-normalised
            sa.Column("created_at", _TIME),
            sqlite_with_rowid=False,
        ),
        sa.Table(
            "jobs", meta,
            sa.Column("job_id", sa.Text, primary_key=True),
            sa.Column("kb", sa.Text),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),  # queued | running | succeeded | failed | skipped | cancelled
            sa.Column("done", sa.Integer, nullable=False, server_default="0"),
            sa.Column("total", sa.Integer, nullable=False, server_default="0"),
            sa.Column("result", sa.Text),  # JSON
            sa.Column("error", sa.Text),
            sa.Column("created_at", _TIME, nullable=False),
            sa.Column("started_at", _TIME),
            sa.Column("finished_at", _TIME),
            sa.Column("owner", sa.Text),  # the JobRunner running it: its heartbeat is the job's lease
            sa.Column("heartbeat_at", _TIME),
            sa.Column("payload", sa.Text),  # JSON: what a runner needs to run the job again
            sa.Column("cancel_requested", sa.Integer),
        ),
        sa.Table(
            "conversations", meta,
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("owner", sa.Text, nullable=False),
            sa.Column("kbs", sa.Text, nullable=False),  # JSON list of KB names
            sa.Column("title", sa.Text, nullable=False, server_default=""),
            sa.Column("created_at", _TIME, nullable=False),
            sa.Column("updated_at", _TIME, nullable=False),
        ),
        sa.Table(
            "conversation_messages", meta,
            sa.Column("id", _ID, primary_key=True, autoincrement=True),
            sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("role", sa.Text, nullable=False),
            sa.Column("content", sa.Text, nullable=False),
            sa.Column("model_text", sa.Text),
            sa.Column("kb", sa.Text),
            sa.Column("grounded", sa.Integer),
            sa.Column("citations", sa.Text),
            sa.Column("evidence", sa.Text),
            sa.Column("settings", sa.Text),
            sa.Column("created_at", _TIME, nullable=False),
            sqlite_autoincrement=True,
        ),
        sa.Table(
            "message_feedback", meta,
            sa.Column("message_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                      autoincrement=False),  # no foreign key: feedback outlives its conversation
            sa.Column("conversation_id", sa.Text, nullable=False),
            sa.Column("owner", sa.Text, nullable=False),
            sa.Column("kb", sa.Text),
            sa.Column("rating", sa.Text, nullable=False),
            sa.Column("comment", sa.Text, nullable=False, server_default=""),
            sa.Column("expected", sa.Text),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("answer", sa.Text, nullable=False),
            sa.Column("model_text", sa.Text),
            sa.Column("sources", sa.Text, nullable=False),
            sa.Column("settings", sa.Text),
            sa.Column("created_at", _TIME, nullable=False),
        ),
    ]


# (name, table, columns, partial-index condition)
_INDEXES = [
    ("chunks_by_doc", "chunks", ["kb", "doc_id"], None),
    ("chunks_by_gen", "chunks", ["kb", "added_gen", "deleted_gen"], None),
    # Commits purge and recovery resets tombstoned rows: without this each scanned the whole KB.
    ("chunks_tombstoned", "chunks", ["kb", "deleted_gen"], "deleted_gen IS NOT NULL"),
    ("documents_by_origin", "documents", ["kb", "origin"], None),
    ("conversations_by_owner", "conversations", ["owner", "updated_at"], None),
    ("messages_by_conversation", "conversation_messages", ["conversation_id", "id"], None),
    ("feedback_by_kb", "message_feedback", ["kb", "rating", "created_at"], None),
]


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in _tables(sa.MetaData()):
        if table.name not in existing:
            table.create(bind)
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:  # added by a version after the one that made this catalog
                op.add_column(table.name, column._copy())
    for name, table_name, columns, where in _INDEXES:
        if name in {index["name"] for index in sa.inspect(bind).get_indexes(table_name)}:
            continue
        condition = {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)} if where else {}
        op.create_index(name, table_name, columns, **condition)


def downgrade() -> None:
    for table in reversed(_tables(sa.MetaData())):
        op.drop_table(table.name)

"""Schema migrations (Alembic, run on open): catalogs made by the code before migrations open and upgrade.

The old catalogs are built here from the DDL those versions wrote (copied below, not a committed binary),
with a KB, a document, chunks, a cached vector, a job and a conversation in them.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from rag.errors import ConfigError
from rag.store.catalog import Catalog
from rag.store.conversations import ConversationStore
from rag.store.db import migrate
from rag.store.jobs import JobStore
from tests.postgres_server import PASSWORD, postgres  # noqa: F401  (fixture)

# rag/store/schema.sql, conversations.SCHEMA and the columns added on open, as of the last version before
# Alembic (commit 65b06f6).
BEFORE_MIGRATIONS = """-- The catalog: the source of truth. Vector and BM25 indexes are derived snapshots of it.
-- Chunks are versioned by generation: a reader at generation G sees the chunks with
-- added_gen <= G and (deleted_gen IS NULL OR deleted_gen > G).
CREATE TABLE IF NOT EXISTS kbs (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    generation  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS documents (
    kb           TEXT NOT NULL REFERENCES kbs(name) ON DELETE CASCADE,
    doc_id       TEXT NOT NULL,
    source       TEXT NOT NULL,
    path         TEXT,
    format       TEXT NOT NULL DEFAULT '',
    content_hash TEXT,
    size         INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL,            -- indexed | failed
    error        TEXT,
    chunks       INTEGER NOT NULL DEFAULT 0,
    title        TEXT,
    updated_at   REAL NOT NULL,
    note         TEXT,                     -- how a misnamed or damaged file was read (salvage)
    origin       TEXT,                     -- upload | sync:FOLDER | schedule:NAME (docs/sync.md, "Origins")
    uploaded_by  TEXT,                     -- the label of the key that uploaded it (origin upload)
    tags         TEXT NOT NULL DEFAULT '[]', -- JSON list of strings
    PRIMARY KEY (kb, doc_id)
);

CREATE TABLE IF NOT EXISTS chunks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kb          TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    ordinal     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    heading     TEXT,
    page        INTEGER,
    language    TEXT NOT NULL,
    text_hash   TEXT NOT NULL,
    tokens      TEXT NOT NULL,             -- BM25 tokens, space-separated, so indexes rebuild without re-tokenizing
    added_gen   INTEGER NOT NULL,
    deleted_gen INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (kb, doc_id);
CREATE INDEX IF NOT EXISTS chunks_by_gen ON chunks (kb, added_gen, deleted_gen);
-- Commits purge and recovery resets tombstoned rows: without this each scanned the whole KB.
CREATE INDEX IF NOT EXISTS chunks_tombstoned ON chunks (kb, deleted_gen) WHERE deleted_gen IS NOT NULL;

CREATE TABLE IF NOT EXISTS embeddings (
    model     TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector    BLOB NOT NULL,               -- float32, L2-normalised
    PRIMARY KEY (model, text_hash)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    kb          TEXT,
    kind        TEXT NOT NULL,             -- ingest | sync | ...
    status      TEXT NOT NULL,             -- queued | running | succeeded | failed | skipped
    done        INTEGER NOT NULL DEFAULT 0,
    total       INTEGER NOT NULL DEFAULT 0,
    result      TEXT,                      -- JSON
    error       TEXT,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    owner       TEXT,                      -- the JobRunner (process) running it
    heartbeat_at REAL                      -- refreshed by that runner while the job is queued or running
);

CREATE TABLE IF NOT EXISTS conversations (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,             -- the API key's label, or "local" without keys
    kbs         TEXT NOT NULL,             -- JSON list of KB names
    title       TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations (owner, updated_at);

CREATE TABLE IF NOT EXISTS conversation_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role            TEXT NOT NULL,         -- user | assistant
    content         TEXT NOT NULL,
    model_text      TEXT,                  -- an answer's model text alone (content adds quoted evidence)
    kb              TEXT,                  -- the KB an answer came from
    grounded        INTEGER,
    citations       TEXT,                  -- JSON, assistant messages only
    evidence        TEXT,                  -- JSON
    settings        TEXT,                  -- JSON: the generation settings of an answer
    created_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON conversation_messages (conversation_id, id);

CREATE TABLE IF NOT EXISTS message_feedback (
    message_id      INTEGER PRIMARY KEY,   -- no foreign key: feedback outlives its conversation
    conversation_id TEXT NOT NULL,
    owner           TEXT NOT NULL,
    kb              TEXT,
    rating          TEXT NOT NULL,         -- up | down
    comment         TEXT NOT NULL DEFAULT '',
    expected        TEXT,                  -- the right answer, when the rater gave it
    question        TEXT NOT NULL,
    answer          TEXT NOT NULL,
    model_text      TEXT,
    sources         TEXT NOT NULL,         -- JSON: the answer's citations
    settings        TEXT,                  -- JSON
    created_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_kb ON message_feedback (kb, rating, created_at);

ALTER TABLE jobs ADD COLUMN payload TEXT;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER;
ALTER TABLE embeddings ADD COLUMN created_at REAL;
CREATE INDEX IF NOT EXISTS documents_by_origin ON documents (kb, origin);
"""

# The first catalog schema (commit 8501efb): no origins, tags, owners, heartbeats, payloads or conversations.
FIRST_VERSION = """-- The catalog: the source of truth. Vector and BM25 indexes are derived snapshots of it.
-- Chunks are versioned by generation: a reader at generation G sees the chunks with
-- added_gen <= G and (deleted_gen IS NULL OR deleted_gen > G).
CREATE TABLE IF NOT EXISTS kbs (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    generation  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS documents (
    kb           TEXT NOT NULL REFERENCES kbs(name) ON DELETE CASCADE,
    doc_id       TEXT NOT NULL,
    source       TEXT NOT NULL,
    path         TEXT,
    format       TEXT NOT NULL DEFAULT '',
    content_hash TEXT,
    size         INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL,            -- indexed | failed
    error        TEXT,
    chunks       INTEGER NOT NULL DEFAULT 0,
    title        TEXT,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (kb, doc_id)
);

CREATE TABLE IF NOT EXISTS chunks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kb          TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    ordinal     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    heading     TEXT,
    page        INTEGER,
    language    TEXT NOT NULL,
    text_hash   TEXT NOT NULL,
    tokens      TEXT NOT NULL,             -- BM25 tokens, space-separated, so indexes rebuild without re-tokenizing
    added_gen   INTEGER NOT NULL,
    deleted_gen INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (kb, doc_id);
CREATE INDEX IF NOT EXISTS chunks_by_gen ON chunks (kb, added_gen, deleted_gen);

CREATE TABLE IF NOT EXISTS embeddings (
    model     TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector    BLOB NOT NULL,               -- float32, L2-normalised
    PRIMARY KEY (model, text_hash)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    kb          TEXT,
    kind        TEXT NOT NULL,             -- ingest | sync | ...
    status      TEXT NOT NULL,             -- queued | running | succeeded | failed | skipped
    done        INTEGER NOT NULL DEFAULT 0,
    total       INTEGER NOT NULL DEFAULT 0,
    result      TEXT,                      -- JSON
    error       TEXT,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL
);
"""


def _old_catalog(path: Path, ddl: str) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(ddl)
        db.execute("INSERT INTO kbs(name, description, created_at, generation) VALUES ('handbook', 'hr', 1.5, 1)")
        db.execute("INSERT INTO documents(kb, doc_id, source, status, chunks, updated_at) VALUES"
                   " ('handbook', 'd1', 'leave.md', 'indexed', 2, 2.5)")
        for ordinal in range(2):
            db.execute("INSERT INTO chunks(kb, doc_id, ordinal, text, language, text_hash, tokens, added_gen)"
                       " VALUES ('handbook', 'd1', ?, ?, 'en', ?, 'leave days', 1)",
                       (ordinal, f"leave text {ordinal}", f"h{ordinal}"))
        db.execute("INSERT INTO embeddings(model, text_hash, vector) VALUES ('m', 'h0', ?)",
                   (np.ones(4, dtype=np.float32).tobytes(),))
        db.execute("INSERT INTO jobs(job_id, kb, kind, status, created_at) VALUES ('old', 'handbook', 'sync', 'succeeded', 3)")


@pytest.mark.parametrize("ddl", [BEFORE_MIGRATIONS, FIRST_VERSION], ids=["last-before-alembic", "first-version"])
def test_an_old_sqlite_catalog_opens_and_upgrades(tmp_path: Path, ddl: str) -> None:
    path = tmp_path / "catalog.sqlite"
    _old_catalog(path, ddl)
    catalog = Catalog(path)
    assert migrate.current_revision(catalog.database) == migrate.HEAD
    [kb] = catalog.list_kbs()
    assert (kb.name, kb.description, kb.documents, kb.chunks, kb.generation) == ("handbook", "hr", 1, 2, 1)
    doc = catalog.document("handbook", "d1")
    assert (doc.source, doc.origin, doc.tags, doc.note) == ("leave.md", "upload", (), None)
    assert [c.text for c in catalog.document_chunks("handbook", "d1")] == ["leave text 0", "leave text 1"]
    assert catalog.cached_embeddings("m", ["h0"])["h0"].tolist() == [1.0] * 4
    assert JobStore(catalog).get("old").status == "succeeded"
    # What was added since works on the upgraded file: tags, a new generation, a conversation.
    catalog.set_tags("handbook", "d1", ["policy"])
    _, [ids] = catalog.stage_documents("handbook", 2, [("d2", [])])
    assert ids == []
    store = ConversationStore(catalog)
    conversation = store.create("alice", ["handbook"])
    assert store.get(conversation.id).kbs == ["handbook"]
    catalog.close()
    with sqlite3.connect(path) as db:  # the upgraded schema has every column and index of a new catalog
        columns = {row[1] for row in db.execute("PRAGMA table_info(documents)")}
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"note", "origin", "uploaded_by", "tags"} <= columns
    assert {"chunks_by_doc", "chunks_tombstoned", "documents_by_origin", "feedback_by_kb"} <= indexes
    assert Catalog(path).document("handbook", "d1").tags == ("policy",)  # a second open migrates nothing


def test_head_is_the_newest_script() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(resources.files("rag.store").joinpath("migrations")))
    assert ScriptDirectory.from_config(config).get_current_head() == migrate.HEAD


def test_a_new_catalog_has_the_same_schema_on_both_databases(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    shapes = []
    for target in (tmp_path / "catalog.sqlite", postgres.create_database()):
        catalog = Catalog(target)
        inspector = sa.inspect(catalog.database.engine)
        shapes.append({table: sorted(c["name"] for c in inspector.get_columns(table))
                       for table in inspector.get_table_names()})
        catalog.close()
    assert shapes[0] == shapes[1] and "alembic_version" in shapes[0]
    # The Core tables the repositories query (rag/store/db/tables.py) mirror the migrated columns exactly.
    from rag.store.db.tables import metadata

    for table in metadata.sorted_tables:
        assert sorted(column.name for column in table.columns) == shapes[0][table.name], table.name


def test_processes_opening_a_new_catalog_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    code = "import sys; from rag.store.catalog import Catalog; Catalog(sys.argv[1]).list_kbs()"
    processes = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE) for _ in range(3)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    assert migrate.current_revision(Catalog(path).database) == migrate.HEAD


def test_an_unreachable_or_wrong_catalog_url_names_the_setting_and_hides_the_password(postgres) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from tests.api_server import free_port

    for url in (f"postgresql://rag:{PASSWORD}@127.0.0.1:{free_port()}/rag",  # nothing listens there
                postgres.url("postgres", password="wrong-" + PASSWORD)):  # authentication fails
        with pytest.raises(ConfigError) as caught:
            Catalog(url)
        message = str(caught.value)
        assert message.startswith("catalog_url postgresql+psycopg://rag:***@127.0.0.1:") and PASSWORD not in message
    with pytest.raises(ConfigError, match="catalog_url 'mysql://u:\\*\\*\\*@db/x': use postgresql://"):
        Catalog("mysql://u:hunter2@db/x")


def test_the_cli_reports_a_bad_catalog_url_without_a_traceback(tmp_path: Path) -> None:
    from tests.api_server import free_port

    env = {"RAG_HOME": str(tmp_path / "home"), "RAG_CATALOG_URL": f"postgresql://rag:{PASSWORD}@127.0.0.1:{free_port()}/x",
           "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "rag.cli", "kb", "list"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "catalog_url" in output and "Traceback" not in output and PASSWORD not in output

-- The catalog: the source of truth. Vector and BM25 indexes are derived snapshots of it.
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

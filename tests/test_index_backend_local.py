"""The local segmented engine passes the IndexBackend suite; plus what is particular to it (segments, ANN, mmap)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from index_backend_suite import KB, SPACE, Corpus, IndexBackendSuite, chunk, document, grow, texts_of, vector

from rag.embed import EmbeddingRouter
from rag.errors import ConfigError
from rag.store import segment as segment_module
from rag.store.bm25_index import BM25Params
from rag.store.catalog import Catalog
from rag.store.local import LocalBackend
from rag.store.manifest import KBFiles
from rag.store.segment import DenseSettings


def make_backend(home: Path, dense: DenseSettings | None = None, factor: int = 10) -> LocalBackend:
    catalog = Catalog(home / "catalog.sqlite")
    if not catalog.kb_exists(KB):
        catalog.create_kb(KB)
    return LocalBackend(catalog, lambda kb: home / "kbs" / kb, EmbeddingRouter("minilm", "usem3"),
                        BM25Params(method="robertson", k1=1.5, b=0.75), dense, merge_factor=factor,
                        background_merge=False)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    found = make_backend(tmp_path)
    yield found
    found.catalog.close()


class TestLocalBackend(IndexBackendSuite):
    pass


class TestLocalBackendWithBackgroundMerges(IndexBackendSuite):
    """The same behaviour while merges run after every commit (factor 2: merging all the time)."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[LocalBackend]:
        found = make_backend(tmp_path, factor=2)
        found.background_merge = True
        yield found
        found.catalog.close()


def test_a_commit_writes_only_the_new_chunks_and_refresh_keeps_loaded_segments(tmp_path: Path) -> None:
    backend = make_backend(tmp_path)
    corpus = Corpus(seed=11)
    grow(backend, corpus, commits=6)
    reader = backend.reader(KB)
    files = backend.files(KB)
    segments_before = {s.segment.name: s.segment for s in reader.segments}
    with backend.writer(KB) as writer:
        corpus.put(writer, "fresh")
        writer.commit()
    manifest = files.latest()
    assert manifest is not None
    newest = manifest.segments[-1]
    assert newest.rows == len(corpus.docs["fresh"])  # the new segment holds the staged chunks only
    refreshed = backend.reader(KB)
    for live in refreshed.segments:  # segments loaded before are the same objects, not reloaded
        if live.segment.name in segments_before:
            assert live.segment is segments_before[live.segment.name]
    post_rows = refreshed.segments[0].segment.post_rows
    assert not post_rows.flags.owndata and isinstance(post_rows.base, np.memmap)  # memory-mapped, not copied
    backend.catalog.close()


def test_tiered_merge_bounds_the_segment_count(tmp_path: Path) -> None:
    backend = make_backend(tmp_path, factor=3)
    corpus = Corpus(seed=12)
    grow(backend, corpus, commits=30)
    files = backend.files(KB)
    before = len(files.latest().segments)  # type: ignore[union-attr]
    ids_before = backend.reader(KB).chunk_ids().tolist()
    backend.merge(KB)
    after = files.latest()
    assert after is not None and len(after.segments) < before
    assert backend.reader(KB).chunk_ids().tolist() == ids_before
    assert len(list(files.segments.iterdir())) >= len(after.segments)
    backend.catalog.close()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ann_segments_find_what_exact_search_finds_and_skip_deleted_chunks(tmp_path: Path, kind: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    backend = make_backend(tmp_path, DenseSettings(kind=kind, ann_min_rows=1, ivf_nprobe=8))
    corpus = Corpus(seed=13)
    with backend.writer(KB) as writer:
        for i in range(700):
            corpus.put(writer, f"doc{i}")
        writer.commit()
    with backend.writer(KB) as writer:
        for i in range(0, 700, 7):
            corpus.delete(writer, f"doc{i}")
        writer.commit()
    reader = backend.reader(KB)
    assert all(live.segment.dense[SPACE].ann is not None for live in reader.segments)
    live = [(" ".join(t), v) for chunks in corpus.docs.values() for t, v in chunks]
    matrix = np.stack([v for _, v in live])
    texts = [t for t, _ in live]
    found = 0
    for _ in range(30):
        query = vector(corpus.rng)
        exact = {texts[i] for i in np.argsort(-(matrix @ query))[:10]}
        got = texts_of(backend, reader.dense_top_k(SPACE, query, 10)[0])  # KeyError for a deleted chunk
        found += len(exact & set(got))
    assert found / 300 >= 0.95
    # Restricted to a tenth of the documents, through the index with a bitmap selector (the threshold
    # below which the restricted vectors are read exactly is set to 0 here).
    monkeypatch.setattr(segment_module, "EXACT_FILTERED_ROWS", 0)
    chosen = frozenset(sorted(corpus.docs)[::10])
    allowed = {" ".join(t): v for d in chosen for t, v in corpus.docs[d]}
    found = 0
    for _ in range(30):
        query = vector(corpus.rng)
        exact = sorted(allowed, key=lambda t: -float(allowed[t] @ query))[:10]
        got = texts_of(backend, reader.dense_top_k(SPACE, query, 10, doc_ids=chosen)[0])
        assert set(got) <= allowed.keys()
        found += len(set(exact) & set(got))
    assert found / 300 >= 0.9
    backend.catalog.close()


def test_cuda_without_gpu_support_is_a_clear_error(tmp_path: Path) -> None:
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.skip("this machine has a GPU FAISS: the error path cannot be reached")
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(ConfigError, match="store.device is 'cuda'"):
        LocalBackend(catalog, lambda kb: tmp_path / kb, EmbeddingRouter("minilm", "usem3"), BM25Params(),
                     device="cuda")
    catalog.close()


def test_a_restriction_works_on_segments_written_before_they_named_their_documents(tmp_path: Path) -> None:
    backend = make_backend(tmp_path)
    corpus = Corpus(seed=17)
    grow(backend, corpus, commits=4)
    for docs in (tmp_path / "kbs" / KB / "segments").glob("*/docs.json"):
        docs.unlink()  # as an older version wrote them
    backend.catalog.close()
    backend = make_backend(tmp_path)
    chosen = frozenset(sorted(corpus.docs)[:2])
    allowed = {" ".join(t) for d in chosen for t, _ in corpus.docs[d]}
    reader = backend.reader(KB)
    assert all(live.segment.doc_keys is None for live in reader.segments)
    got = texts_of(reader, reader.dense_top_k(SPACE, vector(corpus.rng), 50, doc_ids=chosen)[0])
    assert set(got) == allowed
    backend.catalog.close()


def test_bm25_pruning_returns_the_exact_top_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MaxScore pruning (common terms only probed for candidates) changes no id and no score of the top-k."""
    from rag.store import reader as reader_module
    from rag.store.catalog import StagedDocument
    from rag.types import IndexChunk

    backend = make_backend(tmp_path)
    rng = np.random.default_rng(21)
    words = [f"w{i}" for i in range(300)]
    zipf = 1 / np.arange(1, len(words) + 1)
    zipf /= zipf.sum()
    for commit in range(3):
        with backend.writer(KB) as writer:
            for d in range(400):
                tokens = [words[i] for i in rng.choice(len(words), size=int(rng.integers(5, 40)), p=zipf)]
                doc = StagedDocument(doc_id=f"c{commit}d{d}", source=f"c{commit}d{d}.txt", path=None, format="txt",
                                     content_hash="x", size=1, title=None, chunk_count=1)
                writer.stage(doc, [IndexChunk(0, " ".join(tokens), None, None, "en", f"{commit}-{d}", tokens,
                                              {"minilm": vector(rng)})])
            if commit:
                writer.delete(f"c{commit - 1}d7")
            writer.commit()
    reader = backend.reader(KB)
    queries = [[words[int(i)] for i in rng.choice(len(words), size=6, replace=False, p=zipf)] for _ in range(40)]
    queries += [["w0", "w1", "w2", "w250", "w299"]] * 2
    pruned = []
    real_try = reader_module._Scoring.try_prune

    def watched(self: reader_module._Scoring, k: int, remaining: float) -> None:
        real_try(self, k, remaining)
        pruned.append(self.pruned)

    monkeypatch.setattr(reader_module._Scoring, "try_prune", watched)
    got = [reader.bm25_top_k(q, k) for q in queries for k in (5, 20)]
    monkeypatch.setattr(reader_module._Scoring, "try_prune", lambda self, k, remaining: None)
    expected = [reader.bm25_top_k(q, k) for q in queries for k in (5, 20)]
    assert sum(pruned) >= 5  # pruning did happen
    for (ids, scores), (ref_ids, ref_scores) in zip(got, expected, strict=True):
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
        assert set(ids[scores > scores[-1]].tolist()) == set(ref_ids[ref_scores > ref_scores[-1]].tolist())
    backend.catalog.close()


def test_forget_stops_a_running_background_merge_before_the_folder_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import shutil
    import threading
    import time

    from rag.store import merge as merge_module

    backend = make_backend(tmp_path, factor=2)
    corpus = Corpus(seed=23)
    grow(backend, corpus, commits=1)
    started = threading.Event()
    real_write = merge_module.write_segment

    def slow_write(*args: object, **kwargs: object) -> None:
        started.set()
        time.sleep(0.5)  # the KB is deleted while the merged segment is being written
        real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(merge_module, "write_segment", slow_write)
    backend.background_merge = True
    for _ in range(20):  # commit until two segments share a tier: a merge starts in the background
        grow(backend, corpus, commits=1)
        if started.wait(0.2):
            break
    assert started.is_set()
    before = backend.files(KB).latest()
    backend.forget(KB)  # returns once the merge has stopped
    assert not any(t.name == f"rag-merge-{KB}" for t in threading.enumerate())
    latest = KBFiles(tmp_path / "kbs" / KB).latest()
    assert latest is not None and before is not None
    assert [e.name for e in latest.segments] == [e.name for e in before.segments]  # the merge did not publish
    shutil.rmtree(tmp_path / "kbs" / KB)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    backend.catalog.close()


def test_a_search_whose_reader_fell_two_commits_behind_a_deletion_searches_again(tmp_path: Path) -> None:
    """Two commits during one search: the second purges the chunks the first deleted, which the search's
    reader still ranks. The searcher notices the unreadable rows and searches the current generation."""
    from rag.config import RetrievalSettings
    from rag.retrieve.searcher import Searcher, SearchOptions

    backend = make_backend(tmp_path)
    corpus = Corpus(seed=29)
    rng = np.random.default_rng(29)
    with backend.writer(KB) as writer:
        for i in range(12):
            tokens = ["zebra", f"only{i}"] if i < 5 else [f"only{i}"]  # under half the chunks: positive idf
            writer.stage(document(f"doc{i}", 1), [chunk(0, tokens, vector(rng))])
        writer.commit()
    stale = backend.reader(KB)
    with backend.writer(KB) as writer:
        writer.delete("doc0")
        writer.commit()
    with backend.writer(KB) as writer:
        corpus.put(writer, "later")
        writer.commit()
    assert len(stale.chunks([int(i) for i in stale.chunk_ids()])) == 11  # doc0's chunk was purged

    class FirstStale:
        """The backend, except that the first reader handed out is the stale one."""

        def __init__(self) -> None:
            self.handed = 0

        def reader(self, kb: str) -> object:
            self.handed += 1
            return stale if self.handed == 1 else backend.reader(kb)

    class QueryVectors:  # BM25 mode: the searcher only asks whether the model is multilingual
        multilingual = False

        def embed_query(self, text: str) -> np.ndarray:
            return vector(rng)

    backend.router.embedder = lambda name: QueryVectors()  # type: ignore[method-assign,assignment,return-value]
    wrapped = FirstStale()
    searcher = Searcher(wrapped, backend.router, RetrievalSettings())  # type: ignore[arg-type]
    hits = searcher.search(KB, "zebra", SearchOptions(top_k=5, mode="bm25"))  # the stale reader ranks doc0 too
    assert wrapped.handed == 2
    assert {h.doc_id for h in hits} == {f"doc{i}" for i in range(1, 5)}
    backend.catalog.close()

"""The behaviour every IndexBackend must have, as a base class (in the style of Haystack's DocumentStore tests).

A backend's test module subclasses ``IndexBackendSuite`` and provides one fixture, ``backend``: an
IndexBackend over a real catalog with a KB named ``kb`` created (see tests/test_index_backend_local.py).
Chunks carry their vectors (``IndexChunk.vectors``), so no embedding model is loaded.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag.store.catalog import StagedDocument
from rag.store.segment import EmbeddingSpace
from rag.types import IndexChunk

KB = "kb"
DIM = 16
MODEL = "minilm"  # only a name here: the vectors come with the chunks
SPACE = EmbeddingSpace(MODEL, "en")
VOCABULARY = [f"term{i}" for i in range(400)]  # no term is in half the chunks: no negative IDF
CENTRES = np.random.default_rng(5).normal(size=(12, DIM)).astype(np.float32)


def vector(rng: np.random.Generator) -> np.ndarray:
    v = CENTRES[rng.integers(len(CENTRES))] + 0.3 * rng.normal(size=DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def chunk(ordinal: int, tokens: list[str], vec: np.ndarray) -> IndexChunk:
    text = " ".join(tokens)
    return IndexChunk(ordinal, text, None, None, "en", f"h{hash((text, vec.tobytes()))}", tokens, {MODEL: vec})


def document(doc_id: str, chunks: int) -> StagedDocument:
    return StagedDocument(doc_id=doc_id, source=f"{doc_id}.txt", path=None, format="txt", content_hash=doc_id,
                          size=1, title=None, chunk_count=chunks)


class Corpus:
    """What should be visible: doc id → [(tokens, vector)], kept beside the backend as the reference."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.rng = np.random.default_rng(seed)
        self.docs: dict[str, list[tuple[list[str], np.ndarray]]] = {}
        self.version = 0

    def new_chunks(self) -> list[tuple[list[str], np.ndarray]]:
        self.version += 1
        return [([self.rnd.choice(VOCABULARY) for _ in range(self.rnd.randint(5, 30))] + [f"v{self.version}"],
                 vector(self.rng)) for _ in range(self.rnd.randint(1, 4))]

    def put(self, writer: Any, doc_id: str) -> None:
        chunks = self.new_chunks()
        writer.stage(document(doc_id, len(chunks)), [chunk(i, t, v) for i, (t, v) in enumerate(chunks)])
        self.docs[doc_id] = chunks

    def delete(self, writer: Any, doc_id: str) -> None:
        writer.delete(doc_id)
        self.docs.pop(doc_id)


def texts_of(source: Any, ids: np.ndarray) -> list[str]:
    """The texts of chunk ids, as ``source`` (a reader, or a backend's current reader) resolves them."""
    reader = source if hasattr(source, "bm25_top_k") else source.reader(KB)
    rows = reader.chunks([int(i) for i in ids])
    return [rows[int(i)].text for i in ids]


def grow(backend: Any, corpus: Corpus, commits: int) -> None:
    """Many small commits: new documents, replaced ones and deleted ones."""
    for step in range(commits):
        with backend.writer(KB) as writer:
            for _ in range(corpus.rnd.randint(1, 5)):
                corpus.put(writer, f"d{corpus.rnd.randint(0, 60)}")
            if step % 3 == 2 and len(corpus.docs) > 3:
                corpus.delete(writer, corpus.rnd.choice(sorted(corpus.docs)))
            writer.commit()


class IndexBackendSuite:
    def test_nothing_staged_is_visible_before_commit(self, backend: Any) -> None:
        assert backend.reader(KB).count() == 0
        with backend.writer(KB) as writer:
            rng = np.random.default_rng(1)
            writer.stage(document("a", 3), [chunk(0, ["alpha", "beta"], vector(rng)), chunk(1, ["gamma"], vector(rng)),
                                            chunk(2, ["delta"], vector(rng))])
            assert backend.reader(KB).count() == 0
            assert len(backend.reader(KB).bm25_top_k(["alpha"], 5)[0]) == 0
            generation = writer.commit()
        reader = backend.reader(KB)
        assert reader.generation == generation and reader.count() == 3
        assert texts_of(backend, reader.bm25_top_k(["alpha"], 5)[0]) == ["alpha beta"]

    def test_a_reader_keeps_its_generation(self, backend: Any) -> None:
        rng = np.random.default_rng(2)
        with backend.writer(KB) as writer:
            writer.stage(document("a", 1), [chunk(0, ["alpha"], vector(rng))])
            writer.stage(document("f", 2), [chunk(0, ["filler"], vector(rng)), chunk(1, ["more"], vector(rng))])
            writer.commit()
        old = backend.reader(KB)
        with backend.writer(KB) as writer:
            writer.delete("a")
            writer.stage(document("b", 1), [chunk(0, ["alpha", "gamma"], vector(rng))])
            writer.commit()
        new = backend.reader(KB)
        assert new.generation == old.generation + 1
        # The old reader still answers from its generation (the deleted document's chunk; the catalog no
        # longer names its document, so only its id is checked), the new one from the new generation.
        old_hit = old.bm25_top_k(["alpha"], 5)[0].tolist()
        assert len(old_hit) == 1 and old_hit[0] in old.chunk_ids() and old_hit[0] not in new.chunk_ids()
        assert texts_of(new, new.bm25_top_k(["alpha"], 5)[0]) == ["alpha gamma"]
        assert len(old.dense_top_k(SPACE, vector(rng), 5)[0]) == 3
        assert old_hit[0] in old.dense_top_k(SPACE, vector(rng), 5)[0]

    def test_tombstoned_chunks_are_never_returned(self, backend: Any) -> None:
        corpus = Corpus(seed=3)
        grow(backend, corpus, commits=12)
        reader = backend.reader(KB)
        expected = {" ".join(t) for chunks in corpus.docs.values() for t, _ in chunks}
        assert set(texts_of(backend, reader.chunk_ids())) == expected
        assert reader.count() == len(expected)
        everything = reader.bm25_top_k(VOCABULARY + [f"v{i}" for i in range(corpus.version + 1)], 10_000)[0]
        assert set(texts_of(backend, everything)) == expected
        dense = reader.dense_top_k(SPACE, vector(corpus.rng), 10_000)[0]
        assert set(texts_of(backend, dense)) == expected

    def test_an_interrupted_writer_leaves_the_last_commit(self, backend: Any) -> None:
        corpus = Corpus(seed=4)
        grow(backend, corpus, commits=3)
        before = backend.reader(KB)
        visible = sorted(texts_of(backend, before.chunk_ids()))
        with pytest.raises(RuntimeError), backend.writer(KB) as writer:
            writer.stage(document("late", 1), [chunk(0, ["late", "arrival"], vector(corpus.rng))])
            writer.delete(sorted(corpus.docs)[0])
            raise RuntimeError("the process dies here")
        after = backend.reader(KB)
        assert after.generation == before.generation
        assert sorted(texts_of(backend, after.chunk_ids())) == visible
        assert len(after.bm25_top_k(["arrival"], 5)[0]) == 0
        grow(backend, corpus, commits=2)  # and the next writer works
        expected = {" ".join(t) for chunks in corpus.docs.values() for t, _ in chunks}
        assert set(texts_of(backend, backend.reader(KB).chunk_ids())) == expected

    def test_bm25_top10_equals_one_index_over_the_live_chunks(self, backend: Any) -> None:
        corpus = Corpus(seed=5)
        grow(backend, corpus, commits=25)
        live = [(t, v) for chunks in corpus.docs.values() for t, v in chunks]
        reference = BM25Okapi([t for t, _ in live])
        texts = [" ".join(t) for t, _ in live]
        reader = backend.reader(KB)
        compared = 0
        for query in ([corpus.rnd.choice(VOCABULARY) for _ in range(3)] for _ in range(30)):
            expected_scores = reference.get_scores(query)
            ids, scores = reader.bm25_top_k(query, 10)
            expected = np.sort(expected_scores[expected_scores > 0])[::-1][:10]
            # The suite's backends use robertson with k1 = 1.5, b = 0.75: rank_bm25's formula
            # without the constant (k1 + 1) factor.
            np.testing.assert_allclose(np.asarray(scores) * 2.5, expected, rtol=1e-4)
            got = texts_of(backend, ids)
            for text, score in zip(got, scores, strict=True):
                position = texts.index(text)
                assert abs(expected_scores[position] - score * 2.5) < 1e-3 * max(1.0, score)
            compared += len(ids)
        assert compared > 100

    def test_dense_top10_equals_exact_search(self, backend: Any) -> None:
        corpus = Corpus(seed=6)
        grow(backend, corpus, commits=20)
        live = [(" ".join(t), v) for chunks in corpus.docs.values() for t, v in chunks]
        matrix = np.stack([v for _, v in live])
        reader = backend.reader(KB)
        for _ in range(20):
            query = vector(corpus.rng)
            exact = matrix @ query
            ids, scores = reader.dense_top_k(SPACE, query, 10)
            np.testing.assert_allclose(scores, np.sort(exact)[::-1][:10], rtol=1e-5, atol=1e-6)
            for text, score in zip(texts_of(backend, ids), scores, strict=True):
                assert abs(exact[[t for t, _ in live].index(text)] - score) < 1e-5

    def test_document_vectors_blend_the_whole_document(self, backend: Any) -> None:
        corpus = Corpus(seed=7)
        grow(backend, corpus, commits=10)
        reader = backend.reader(KB)
        query = vector(corpus.rng)
        expected = []
        for chunks in corpus.docs.values():
            mean = np.sum([v for _, v in chunks], axis=0)
            mean /= np.linalg.norm(mean)
            expected += [0.6 * float(v @ query) + 0.4 * float(mean @ query) for _, v in chunks]
        _, scores = reader.dense_top_k(SPACE, query, 5, document_weight=0.4)
        np.testing.assert_allclose(scores, sorted(expected, reverse=True)[:5], rtol=1e-5, atol=1e-6)

    def test_optimize_keeps_every_answer(self, backend: Any) -> None:
        corpus = Corpus(seed=8)
        grow(backend, corpus, commits=15)
        query = vector(corpus.rng)
        before = backend.reader(KB)
        bm25_before = before.bm25_top_k(["term3", "term7"], 10)
        dense_before = before.dense_top_k(SPACE, query, 10)
        assert backend.optimize(KB) == 1
        after = backend.reader(KB)
        assert after.generation == before.generation
        bm25_after = after.bm25_top_k(["term3", "term7"], 10)
        dense_after = after.dense_top_k(SPACE, query, 10)
        np.testing.assert_allclose(bm25_after[1], bm25_before[1], rtol=1e-5)
        np.testing.assert_allclose(dense_after[1], dense_before[1], rtol=1e-5, atol=1e-6)
        assert texts_of(backend, dense_after[0]) == texts_of(backend, dense_before[0])
        assert sorted(after.chunk_ids().tolist()) == sorted(before.chunk_ids().tolist())

    def test_a_restriction_to_one_percent_of_the_kb_returns_a_full_top_k_of_those_documents(self, backend: Any) -> None:
        corpus = Corpus(seed=9)
        with backend.writer(KB) as writer:
            for i in range(600):
                corpus.put(writer, f"bulk{i}")
            writer.commit()
        grow(backend, corpus, commits=6)  # later commits, replacements and deletes: tombstones in the bulk
        reader = backend.reader(KB)
        # 1% of the documents, holding at least 10 chunks.
        names = sorted(corpus.docs, key=lambda d: (-len(corpus.docs[d]), d))[: max(1, len(corpus.docs) // 100)]
        chosen = frozenset(names)
        allowed = {" ".join(t): v for d in chosen for t, v in corpus.docs[d]}
        assert len(allowed) >= 10
        tokens = sorted({token for text in allowed for token in text.split(" ")})
        ids, scores = reader.bm25_top_k(tokens, 10, doc_ids=chosen)
        assert len(ids) == 10 and set(texts_of(reader, ids)) <= allowed.keys()
        unrestricted_ids, unrestricted_scores = reader.bm25_top_k(tokens, 100_000)
        inside = [s for t, s in zip(texts_of(reader, unrestricted_ids), unrestricted_scores, strict=True)
                  if t in allowed]
        np.testing.assert_allclose(scores, inside[:10], rtol=1e-5)  # KB-wide statistics, same scores
        for _ in range(5):
            query = vector(corpus.rng)
            ids, scores = reader.dense_top_k(SPACE, query, 10, doc_ids=chosen)
            assert len(ids) == 10 and set(texts_of(reader, ids)) <= allowed.keys()
            np.testing.assert_allclose(scores, sorted((v @ query for v in allowed.values()), reverse=True)[:10],
                                       rtol=1e-5, atol=1e-6)
        assert len(reader.bm25_top_k(tokens, 10, doc_ids=frozenset({"no-such-document"}))[0]) == 0
        assert len(reader.dense_top_k(SPACE, vector(corpus.rng), 10, doc_ids=frozenset())[0]) == 0

"""The sparse BM25 index matches the reference rank-bm25 and survives a save/load round trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from rag.store.bm25_index import BM25Index, BM25Params


def _corpus(seed: int = 7) -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(seed)
    vocabulary = [f"term{i}" for i in range(3000)]  # no term is in half the documents: no negative IDF
    docs = [[rng.choice(vocabulary) for _ in range(rng.randint(20, 80))] for _ in range(600)]
    queries = [rng.sample(vocabulary[:800], 3) for _ in range(40)]
    return docs, queries


def test_same_top10_and_scores_as_rank_bm25() -> None:
    docs, queries = _corpus()
    reference = BM25Okapi(docs)
    ours = BM25Index.build(list(range(len(docs))), docs, BM25Params(method="robertson"))
    compared = 0
    for query in queries:
        expected_scores = reference.get_scores(query)
        expected = [i for i in np.argsort(-expected_scores, kind="stable")[:10] if expected_scores[i] > 0]
        ids, scores = ours.search(query, 10)
        # Identical top-10: same documents in the same order, up to the order inside exact ties.
        np.testing.assert_allclose(expected_scores[ids], expected_scores[expected], rtol=1e-6)
        untied = [i for i in expected if np.sum(np.isclose(expected_scores, expected_scores[i])) == 1]
        assert [i for i in ids if i in untied] == untied, query
        # bm25s leaves out the constant (k1 + 1) factor of the TF term: same ranking, scaled scores.
        np.testing.assert_allclose(scores * 2.5, expected_scores[expected], rtol=1e-4)
        compared += len(expected)
    assert compared > 100


def test_round_trip_without_pickle(tmp_path: Path) -> None:
    docs, queries = _corpus(seed=3)
    index = BM25Index.build([i * 10 for i in range(len(docs))], docs)
    index.save(tmp_path / "bm25")
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))
    loaded = BM25Index.load(tmp_path / "bm25")
    for query in queries[:5]:
        a_ids, a_scores = index.search(query, 10)
        b_ids, b_scores = loaded.search(query, 10)
        assert list(a_ids) == list(b_ids)
        np.testing.assert_allclose(a_scores, b_scores)
    assert all(i % 10 == 0 for i in loaded.search(queries[0], 10)[0])  # chunk ids, not positions


def test_unknown_terms_and_empty_index() -> None:
    index = BM25Index.build([1, 2], [["alpha", "beta"], ["gamma"]])
    assert len(index.search(["zeta"], 5)[0]) == 0
    assert list(index.search(["gamma", "zeta"], 5)[0]) == [2]
    assert len(BM25Index.build([], []).search(["alpha"], 5)[0]) == 0

"""The language switch, on the demo KB (samples/: English and Chinese documents) with the real bundled models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.retrieve.language_switch import decide, switch_order
from rag.retrieve.searcher import Searcher, SearchOptions

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from rag.config import load_settings
    from rag.service import RagService

    service = RagService(load_settings(home=tmp_path_factory.mktemp("switch-home")))
    service.create_kb("demo", "samples")
    service.ingest("demo", [SAMPLES])
    yield service
    service.catalog.close()


def _first(service, query: str, **kwargs) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    hits = service.search("demo", query, top_k=3, **kwargs)
    return hits[0].source, hits[0].explain


def test_a_chinese_question_about_the_english_manual_ranks_it_first(demo) -> None:  # type: ignore[no-untyped-def]
    source, explain = _first(demo, "水壶的保修期是多久？")
    assert source == "handbook/aurora-kettle-handbook.md"
    assert explain["language_switch"]["switched"] is True and explain["language_switch"]["to"] == "en"
    assert "dense:usem3@en" in explain


def test_an_english_question_about_a_chinese_document_ranks_it_first(demo) -> None:  # type: ignore[no-untyped-def]
    source, explain = _first(demo, "How many days of paid annual leave do full-time employees get?")
    assert source == "faq/常见问题.md"
    assert explain["language_switch"]["switched"] is True and explain["language_switch"]["to"] == "zh"


@pytest.mark.parametrize(("query", "gold"), [
    ("Does the kettle have a warranty?", "handbook/aurora-kettle-handbook.md"),
    ("每年有多少天年假？", "faq/常见问题.md"),
])
def test_same_language_questions_do_not_switch(demo, query: str, gold: str) -> None:  # type: ignore[no-untyped-def]
    source, explain = _first(demo, query)
    assert source == gold
    assert explain["language_switch"]["switched"] is False
    assert explain["language_switch"]["evidence"] < demo.settings.retrieval.language_switch_threshold


def test_without_the_switch_the_chinese_chunks_win(demo) -> None:  # type: ignore[no-untyped-def]
    """What the switch fixes: fusion alone ranks a Chinese chunk first for the Chinese kettle question."""
    settings = demo.settings.retrieval.model_copy(update={"language_switch": False})
    off = Searcher(demo.index, demo.router, settings)
    hits = off.search("demo", "水壶的保修期是多久？", SearchOptions(top_k=3))
    assert hits[0].source != "handbook/aurora-kettle-handbook.md"
    assert "language_switch" not in hits[0].explain


def test_single_retriever_modes_never_switch(demo) -> None:  # type: ignore[no-untyped-def]
    for mode in ("bm25", "dense"):
        hits = demo.search("demo", "水壶的保修期是多久？", top_k=3, mode=mode)
        assert all("language_switch" not in hit.explain for hit in hits)


def test_evidence_is_the_gap_less_the_weighted_bm25_share() -> None:
    switch = decide("zh", own_best=0.33, other_best=0.28, bm25_share=0.25, bm25_weight=0.4, threshold=-0.2)
    assert switch is not None
    assert switch.similarity_gap == pytest.approx(-0.05) and switch.evidence == pytest.approx(-0.15)
    assert switch.switched and switch.target_language == "en"
    # The question's own words occur in the KB (share 1.0): the same gap no longer switches.
    assert not decide("zh", 0.33, 0.28, 1.0, 0.4, -0.2).switched  # type: ignore[union-attr]
    assert decide("en", 0.3, None, 0.0, 0.4, -0.2) is None  # no chunks in the other language


def test_switch_order_moves_the_target_language_first_keeping_each_order() -> None:
    fused = [(1, 0.9), (2, 0.8), (3, 0.5), (4, 0.4), (5, 0.1)]
    assert switch_order(fused, {3, 5}) == [(3, 0.5), (5, 0.1), (1, 0.9), (2, 0.8), (4, 0.4)]

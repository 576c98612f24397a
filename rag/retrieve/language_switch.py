"""The language switch: is a query about chunks in the other language?

Fusion weighs a query's own language fully (BM25 and its language's model) and the other language's
chunks, reached only through the multilingual model, at ``cross_language_weight``. Without a switch a
Chinese question over an English manual never reaches it: some Chinese chunk always shares a word with
the question (BM25) and a Chinese chunk always comes out closest under the same-language model, so the
right English chunk ranked first for none of the 20 cross-language questions of benchmarks/data/qa.

The switch compares evidence on one scale: the multilingual model (``embedding.cross_language_model``)
embeds chunks of both languages, so its best cosine over the other language's chunks and its best
cosine over the query language's chunks are comparable, and the BM25 share of the best BM25 hit (its
score over what the query could score at best, rag/gate.py) says whether the question's own words occur
in the KB at all (a question about "水壶" over Chinese documents that never name a kettle scores a low
share however well 保修 matches). Evidence = gap − bm25_weight × share; above the threshold the other
language's chunks rank first. Both numbers are fitted on benchmarks/data/qa (docs/retrieval.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LanguageSwitch:
    query_language: str
    target_language: str  # the other language, whose chunks rank first when ``switched``
    similarity_gap: float  # best multilingual cosine, other language − query language
    bm25_share: float  # best BM25 hit's share of the query's attainable BM25 (0..1)
    evidence: float  # similarity_gap − bm25_weight × bm25_share
    switched: bool

    def explain(self) -> dict[str, float | str | bool]:
        return {"to": self.target_language, "switched": self.switched, "evidence": round(self.evidence, 4),
                "similarity_gap": round(self.similarity_gap, 4), "bm25_share": round(self.bm25_share, 4)}


def other_language(language: str) -> str:
    return "en" if language == "zh" else "zh"


def decide(query_language: str, own_best: float | None, other_best: float | None, bm25_share: float,
           bm25_weight: float, threshold: float) -> LanguageSwitch | None:
    """The switch for one query; None when the other language has no chunks in the multilingual model.

    ``own_best`` None (no chunks of the query's language) counts as a gap of the other's whole cosine.
    """
    if other_best is None:
        return None
    gap = other_best - (own_best if own_best is not None else 0.0)
    evidence = gap - bm25_weight * bm25_share
    return LanguageSwitch(query_language, other_language(query_language), gap, bm25_share, evidence,
                          evidence > threshold)


def switch_order(fused: list[tuple[int, float]], target_ids: set[int]) -> list[tuple[int, float]]:
    """The fused ranking with the target language's chunks first, each group in its fused order."""
    first = [item for item in fused if item[0] in target_ids]
    rest = [item for item in fused if item[0] not in target_ids]
    return first + rest


@dataclass(frozen=True, slots=True)
class SwitchSample:
    """One answerable question: its switch features and whether its gold document is in the other language."""

    similarity_gap: float
    bm25_share: float
    cross_language: bool


@dataclass(frozen=True, slots=True)
class SwitchFit:
    bm25_weight: float
    threshold: float
    margin: float  # distance of the closest sample to the boundary, in (gap, share) units
    false_switches: int  # same-language questions switched
    missed: int  # cross-language questions not switched


def fit(samples: list[SwitchSample], false_switch_cost: float = 2.0) -> SwitchFit:
    """The (bm25_weight, threshold) that separates the samples best: fewest errors (a false switch, which
    loses a same-language answer, costs ``false_switch_cost``), then the widest margin; the threshold
    sits midway between the closest samples on either side."""
    if not any(s.cross_language for s in samples) or all(s.cross_language for s in samples):
        raise ValueError("fitting the switch needs same-language and cross-language questions")
    best: tuple[float, float, SwitchFit] | None = None
    for step in range(41):
        weight = round(0.05 * step, 2)
        evidence = sorted((s.similarity_gap - weight * s.bm25_share, s.cross_language) for s in samples)
        values = [e for e, _ in evidence]
        for left, right in zip(values, values[1:], strict=False):
            if right == left:
                continue
            threshold = (left + right) / 2
            false_switches = sum(1 for e, cross in evidence if e > threshold and not cross)
            missed = sum(1 for e, cross in evidence if e <= threshold and cross)
            cost = false_switch_cost * false_switches + missed
            margin = (right - left) / 2 / math.sqrt(1 + weight * weight)
            candidate = SwitchFit(weight, round(threshold, 4), round(margin, 4), false_switches, missed)
            if best is None or (cost, -margin) < (best[0], best[1]):
                best = (cost, -margin, candidate)
    assert best is not None
    return best[2]

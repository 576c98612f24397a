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

"""Weighted reciprocal-rank fusion, normalised so that 1.0 means "ranked first by every retriever"."""

from __future__ import annotations

from collections.abc import Sequence


def reciprocal_rank_fusion(
    rankings: dict[str, Sequence[int]], weights: dict[str, float], k: int = 60
) -> list[tuple[int, float]]:
    """Fuse ranked id lists; returns (id, score in [0, 1]) best first."""
    fused: dict[int, float] = {}
    for name, ids in rankings.items():
        weight = weights.get(name, 0.0)
        if weight <= 0:
            continue
        for rank, item in enumerate(ids, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    best_possible = sum(w for name, w in weights.items() if w > 0 and rankings.get(name)) / (k + 1)
    if not fused or best_possible <= 0:
        return []
    ordered = sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))
    return [(item, score / best_possible) for item, score in ordered]


def score_fusion(
    results: dict[str, tuple[Sequence[int], Sequence[float]]], weights: dict[str, float]
) -> list[tuple[int, float]]:
    """Weighted sum of each retriever's scores divided by its best score; returns (id, score in [0, 1]).

    Unlike RRF it keeps how far apart the candidates are, which measured better on SciFact
    (docs/evaluation.md). 1.0 means "the best hit of every retriever that ran".
    """
    fused: dict[int, float] = {}
    total = 0.0
    for name, (ids, scores) in results.items():
        weight = weights.get(name, 0.0)
        if weight <= 0 or not len(ids):
            continue
        best = max(float(scores[0]), 1e-9)
        total += weight
        for item, score in zip(ids, scores, strict=True):
            fused[item] = fused.get(item, 0.0) + weight * max(float(score), 0.0) / best
    if not fused or total <= 0:
        return []
    ordered = sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))
    return [(item, score / total) for item, score in ordered]

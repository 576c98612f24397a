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

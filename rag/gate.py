"""The relevance gate: is a retrieved chunk about the question at all, on a scale every question shares?

Raw scores are not comparable across questions. A two-word question ("How do I start pairing?") cannot
reach the BM25 score of a ten-word one, and each embedding model has its own cosine range (USE v3 scores
related text lower than MiniLM does). So the gate compares:

- BM25 as a share of what the query could score at best: the hit's raw score over the sum, for each
  query term, of the best score that term reaches alone in this index. A query term that occurs in no
  chunk at all counts as much as the query's rarest known term, so "boiling point of mercury" over a
  kettle manual stays low however well "boil" matches. The words that only say how the question is
  asked ("哪一年", "how long") are left out of what it could score (``subject_terms``): no answer holds
  them, and 楼外楼是哪一年创建的？ over the sentence that names 楼外楼 and its year scored 0.32 with them.
- dense cosine against a threshold per embedding model (``retrieval.min_similarity_by_model``).

Both thresholds are calibrated on answerable and unanswerable questions: those of benchmarks/data/qa and
the CMRC trial's, each also asked with its gold passage held out (benchmarks/bench_gate.py, docs/retrieval.md).

A hit passes when either reaches its threshold. ``strong`` is a higher bar, used to decide whether the
documents plainly answer the question even when the model declines (rag/answer_check.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag.retrieve.tokenize import default_tokenizer
from rag.types import Hit

TermScore = Callable[[str], float | None]  # best raw BM25 score of one term alone; None: term not indexed
# How a question asks, not what it is about: cut from the text before tokenizing, since jieba also cuts
# "哪一年" into "一年", a word that does occur in answers ("保修一年").
_ASKING = re.compile(r"哪一?[年月天]|几[年月天号岁点个次]|多少[年天钱次个]?|多久|多长时间|什么时候|何时|是否|"
                     r"\bhow (?:long|many|much|often|old|far|large|big|heavy|loud|high|soon)\b|\bwhat (?:year|time|date)\b",
                     re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GateThresholds:
    bm25_share: float  # minimum hit BM25 / query's attainable BM25 (0..1)
    similarity: Mapping[str, float]  # minimum cosine per dense model name ("minilm", "usem3", ...)
    default_similarity: float  # for a model not in ``similarity``
    strong_bm25_share: float
    strong_similarity_margin: float  # "strong" dense: cosine ≥ threshold + this


@dataclass(frozen=True, slots=True)
class Relevance:
    bm25_share: float  # 0..1
    similarity: dict[str, float]  # cosine per dense model that scored the hit
    similarity_margin: float  # best (cosine − that model's threshold)
    passes: bool
    strong: bool


class TermIndex(Protocol):
    def bm25_top_k(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]: ...


def term_scorer(index: TermIndex) -> TermScore:
    """Each term's best lone score in ``index`` (its top-1 BM25 hit for that term alone)."""

    def score(term: str) -> float | None:
        _, scores = index.bm25_top_k([term], 1)
        return float(scores[0]) if len(scores) else None

    return score


def subject_terms(question: str) -> list[str]:
    """The question's index terms without the words that only say how it is asked."""
    return default_tokenizer(_ASKING.sub(" ", question))


def attainable_bm25(tokens: Iterable[str], term_score: TermScore) -> float:
    """The most a chunk could score for these query tokens: each term's best lone score, summed.

    Terms the index does not hold are counted at the highest known term's score (being absent
    everywhere, they are rarer than any known term) so that they pull the share down.
    """
    unique = list(dict.fromkeys(tokens))
    known = [score for score in (term_score(t) for t in unique) if score is not None]
    missing = len(unique) - len(known)
    if not known:
        return 0.0
    return float(sum(known) + missing * max(known))


def bm25_share(hit: Hit, attainable: float) -> float:
    raw = float(hit.explain.get("bm25", {}).get("score", 0.0))
    return min(raw / attainable, 1.0) if attainable > 0 else 0.0


def dense_scores(hit: Hit) -> dict[str, float]:
    """Cosine per embedding space that scored the hit ("minilm@en", "usem3@en", ...)."""
    return {key.split(":", 1)[1]: float(value["score"]) for key, value in hit.explain.items()
            if key.startswith("dense:") and isinstance(value, dict) and "score" in value}


def similarity_threshold(space: str, thresholds: GateThresholds) -> float:
    """The threshold of "model@language", else of "model", else the default."""
    model = space.rpartition("@")[0] or space
    for key in (space, model):
        if key in thresholds.similarity:
            return thresholds.similarity[key]
    return thresholds.default_similarity


def judge(hit: Hit, attainable: float, thresholds: GateThresholds) -> Relevance:
    share = round(bm25_share(hit, attainable), 4)  # decided on the figure reported (0.49999… is 0.5)
    similarity = dense_scores(hit)
    margin = max((score - similarity_threshold(space, thresholds) for space, score in similarity.items()),
                 default=-1.0)
    passes = share >= thresholds.bm25_share or margin >= 0
    strong = share >= thresholds.strong_bm25_share or margin >= thresholds.strong_similarity_margin
    return Relevance(share, similarity, round(margin, 4), passes, passes and strong)


# Calibration: thresholds that separate answerable from unanswerable questions (benchmarks/bench_gate.py).

@dataclass(frozen=True, slots=True)
class GateSample:
    """One question's retrieved hits as the gate sees them: (BM25 share, cosine per space) per hit."""

    answerable: bool
    hits: tuple[tuple[float, Mapping[str, float]], ...]


@dataclass(frozen=True, slots=True)
class GateCalibration:
    bm25_share: float
    similarity: dict[str, float]  # per threshold group: "model" (same language), "model@*" (across languages)
    false_declines: float  # answerable questions no hit of which passes
    false_answers: float  # unanswerable questions some hit of which passes

    def settings_thresholds(self, languages: Iterable[str] = ("en", "zh")) -> dict[str, float]:
        """The groups as ``retrieval.min_similarity_by_model`` keys ("usem3@*" → "usem3@en", "usem3@zh")."""
        keys: dict[str, float] = {}
        for group, value in self.similarity.items():
            if group.endswith("@*"):
                keys.update({f"{group[:-2]}@{language}": value for language in languages})
            else:
                keys[group] = value
        return keys


def threshold_group(space: str) -> str:
    """Same-language spaces are keyed by model; spaces reached across languages share "model@*"."""
    model, _, language = space.partition("@")
    return f"{model}@*" if language else model


def _best_per_group(sample: GateSample) -> tuple[float, dict[str, float]]:
    share = max((h[0] for h in sample.hits), default=0.0)
    best: dict[str, float] = {}
    for _, cosines in sample.hits:
        for space, cosine in cosines.items():
            group = threshold_group(space)
            best[group] = max(best.get(group, -1.0), cosine)
    return share, best


def gate_rates(samples: Sequence[GateSample], share: float, similarity: Mapping[str, float]) -> tuple[float, float]:
    """(false declines among answerable, false answers among unanswerable) of the gate alone."""

    def passes(sample: GateSample) -> bool:
        best_share, best = _best_per_group(sample)
        return best_share >= share or any(cosine >= similarity.get(g, 1.0) for g, cosine in best.items())

    answerable = [passes(s) for s in samples if s.answerable]
    unanswerable = [passes(s) for s in samples if not s.answerable]
    fd = round(1 - sum(answerable) / len(answerable), 4) if answerable else 0.0
    fa = round(sum(unanswerable) / len(unanswerable), 4) if unanswerable else 0.0
    return fd, fa


def calibrate(samples: Sequence[GateSample], decline_cost: float = 10.0) -> GateCalibration:
    """Grid search over the BM25 share and one cosine per threshold group.

    Minimises ``decline_cost`` × false declines + false answers. A false decline is final; a question let
    through still meets the model's own decline and the support check, which answered 5 of 40 CMRC
    questions asked without their gold passages (benchmarks/bench_gate.py --answer, share 0.4): a false
    answer of the gate costs about a tenth of a false decline. Of equally good choices, the median on each axis,
    so the thresholds sit between the two groups rather than on an edge.
    """
    if not samples:
        raise ValueError("no samples to calibrate the gate on")
    shares = np.round(np.arange(0.2, 0.95, 0.05), 3)
    cosines = np.round(np.arange(0.15, 0.675, 0.025), 3)
    bests = [_best_per_group(s) for s in samples]
    groups = sorted({g for _, best in bests for g in best})
    answerable = np.array([s.answerable for s in samples])
    share_pass = np.array([[b[0] >= t for b in bests] for t in shares])  # (shares, samples)
    group_pass = [np.array([[b[1].get(g, -1.0) >= t for b in bests] for t in cosines]) for g in groups]
    # passes[i_share, i_g1, i_g2, ..., sample]
    passes = share_pass.reshape(len(shares), *([1] * len(groups)), len(samples))
    for axis, table in enumerate(group_pass):
        shape = [1] * (len(groups) + 2)
        shape[axis + 1], shape[-1] = len(cosines), len(samples)
        passes = passes | table.reshape(shape)
    n_yes, n_no = max(int(answerable.sum()), 1), max(int((~answerable).sum()), 1)
    false_declines = (~passes & answerable).sum(axis=-1) / n_yes
    false_answers = (passes & ~answerable).sum(axis=-1) / n_no
    cost = decline_cost * false_declines + false_answers
    optimal = np.argwhere(np.isclose(cost, cost.min()))
    median = [int(np.sort(optimal[:, axis])[len(optimal) // 2]) for axis in range(optimal.shape[1])]
    similarity = {g: float(cosines[median[i + 1]]) for i, g in enumerate(groups)}
    fd, fa = gate_rates(samples, float(shares[median[0]]), similarity)
    return GateCalibration(float(shares[median[0]]), similarity, fd, fa)

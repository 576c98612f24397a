"""KB-wide BM25 statistics of one generation, and BM25 scoring with them (the local engine's formulas).

Milvus's own BM25 function keeps its statistics per collection (on Milvus Lite: per segment), counting
every KB sharing the collection and rows of other generations; KB-wide statistics at the reader's
generation need our own bookkeeping: one row per (KB, generation) in the generations collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.store.bm25_index import BM25Params
from rag.store.milvus_schema import SEARCH_B, SEARCH_K1, SPACE_SENTINEL, term_key


@dataclass(slots=True)
class GenerationStats:
    chunks: int = 0
    total_len: float = 0.0
    df: dict[int, int] = field(default_factory=dict)  # term key → chunks containing it
    spaces: dict[str, int] = field(default_factory=dict)  # "model@language" → vectors

    @property
    def avgdl(self) -> float:
        return self.total_len / self.chunks if self.chunks else 1.0

    def add(self, terms: list[int], length: float, sign: int) -> None:
        self.chunks += sign
        self.total_len += sign * length
        for term in terms:
            left = self.df.get(term, 0) + sign
            if left > 0:
                self.df[term] = left
            else:
                self.df.pop(term, None)

    def count_space(self, space: str, rows: int) -> None:
        left = self.spaces.get(space, 0) + rows
        if left > 0:
            self.spaces[space] = left
        else:
            self.spaces.pop(space, None)

    def copy(self) -> GenerationStats:
        return GenerationStats(self.chunks, self.total_len, dict(self.df), dict(self.spaces))


def term_frequencies(tokens: list[str]) -> dict[int, int]:
    found: dict[int, int] = {}
    for token in tokens:
        key = term_key(token)
        found[key] = found.get(key, 0) + 1
    return found


def stored_weights(tf: dict[int, int], length: float, avgdl: float) -> dict[int, float]:
    """The sparse vector searched for candidates: tf / (tf + K × norm) with fixed K and b, norm at ``avgdl``
    (the KB's average length when the row was written)."""
    if not tf:
        return {SPACE_SENTINEL: 1.0}
    norm = 1 - SEARCH_B + SEARCH_B * length / avgdl
    return {key: count / (count + SEARCH_K1 * norm) for key, count in tf.items()}


def frequencies_of(weights: dict[int, float], length: float, avgdl: float) -> dict[int, float]:
    """``stored_weights`` inverted: the term frequencies back (exact to float32 rounding)."""
    norm = 1 - SEARCH_B + SEARCH_B * length / avgdl
    return {key: round(w * SEARCH_K1 * norm / (1 - w)) for key, w in weights.items()
            if key != SPACE_SENTINEL and w < 1}


def tf_part(params: BM25Params, tf: float, length: float, avgdl: float) -> float:
    k1, b, method = params.k1, params.b, params.method
    norm = 1 - b + b * length / avgdl
    if method == "atire":
        return tf * (k1 + 1) / (tf + k1 * norm)
    if method == "bm25l":
        c = tf / norm + 0.5
        return (k1 + 1) * c / (k1 + c)
    if method == "bm25+":
        return (k1 + 1) * tf / (k1 * norm + tf) + 0.5
    return tf / (tf + k1 * norm)  # lucene and robertson (bm25s leaves out the constant k1 + 1)

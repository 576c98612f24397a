"""A persistent BM25 index over chunk ids, built with bm25s (sparse matrices: fast at millions of chunks)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np


@dataclass(frozen=True, slots=True)
class BM25Params:
    """How BM25 scores are computed; baked into the index when a snapshot is built."""

    method: str = "lucene"
    k1: float = 1.5
    b: float = 0.75


def idf(params: BM25Params, chunks: int, df: float) -> float:
    """The inverse document frequency of a term in ``df`` of ``chunks`` chunks, per bm25s's variants."""
    n, method = chunks, params.method
    if method == "robertson":
        return float(np.log((n - df + 0.5) / (df + 0.5)))
    if method == "atire":
        return float(np.log(n / df))
    if method == "bm25l":
        return float(np.log((n + 1) / (df + 0.5)))
    if method == "bm25+":
        return float(np.log((n + 1) / df))
    return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))  # lucene


class BM25Index:
    def __init__(self, model: bm25s.BM25 | None, ids: np.ndarray, vocab: dict[str, int]) -> None:
        self._model = model
        self.ids = ids
        self._vocab = vocab

    @classmethod
    def build(cls, ids: list[int], token_lists: list[list[str]], params: BM25Params | None = None) -> BM25Index:
        params = params or BM25Params()
        id_array = np.asarray(ids, dtype=np.int64)
        if not ids:
            return cls(None, id_array, {})
        vocab: dict[str, int] = {}
        corpus_ids = [[vocab.setdefault(token, len(vocab)) for token in tokens] for tokens in token_lists]
        if not vocab:
            return cls(None, id_array, {})
        model = bm25s.BM25(method=params.method, k1=params.k1, b=params.b)
        model.index(bm25s.tokenization.Tokenized(ids=corpus_ids, vocab=vocab), show_progress=False)
        return cls(model, id_array, vocab)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, raw BM25 scores), best first; only chunks matching some token."""
        known = [t for t in tokens if t in self._vocab]
        if self._model is None or not known:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        scores = self._model.get_scores(known)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[scores[top] > 0]
        return self.ids[top], scores[top]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "ids.npy", self.ids, allow_pickle=False)
        (folder / "vocab.json").write_text(json.dumps(self._vocab, ensure_ascii=False), encoding="utf-8")
        if self._model is not None:
            self._model.save(str(folder / "bm25s"), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        ids = np.load(folder / "ids.npy", allow_pickle=False)
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        model = None
        if (folder / "bm25s").exists():
            model = bm25s.BM25.load(str(folder / "bm25s"), allow_pickle=False)
        return cls(model, ids, vocab)

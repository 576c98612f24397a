"""The optional rerank stage: a cross-encoder rescoring the fused candidates.

No cross-encoder ships its weights on PyPI, so none is bundled; name one (hub id or local folder) in
``retrieval.reranker`` to switch the stage on.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from functools import lru_cache
from typing import Protocol

from rag.errors import ModelUnavailable
from rag.types import Hit


class Reranker(Protocol):
    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


class CrossEncoderReranker:
    """Scores are the cross-encoder's logits through a sigmoid: 0..1, higher is more relevant."""

    def __init__(self, model: str, device: str = "cpu") -> None:
        from sentence_transformers import CrossEncoder

        try:
            self._model = CrossEncoder(model, device=device)
        except Exception as exc:
            raise ModelUnavailable(f"cannot load reranker '{model}': {exc}") from exc
        self._lock = threading.Lock()

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        with self._lock:
            logits = self._model.predict([(query, hit.text) for hit in hits], show_progress_bar=False)
        rescored = [
            replace(hit, score=1 / (1 + math.exp(-float(logit))), explain={**hit.explain, "fused": hit.score})
            for hit, logit in zip(hits, logits, strict=True)
        ]
        return sorted(rescored, key=lambda hit: -hit.score)


@lru_cache(maxsize=2)
def load_reranker(model: str, device: str = "cpu") -> Reranker:
    return CrossEncoderReranker(model, device)

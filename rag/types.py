"""Data shapes shared across the engine's stages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk. ``score`` is higher-is-better (see docs/retrieval.md)."""

    chunk_id: int
    doc_id: str
    source: str
    page: int | None
    text: str
    score: float
    heading: str | None = None
    # Per-retriever details (rank and raw score), for people debugging relevance.
    explain: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self, with_explain: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_explain:
            data.pop("explain")
        return data


@dataclass(frozen=True, slots=True)
class Citation:
    n: int
    doc_id: str
    source: str
    page: int | None
    text: str
    chunk_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Answer:
    answer: str
    grounded: bool
    citations: list[Citation]
    question: str = ""
    search_query: str = ""
    # Source sentences quoted verbatim after the model's text ({"n", "text"}; see rag/evidence.py),
    # and the model's text alone: ``answer`` is the model's text followed by the quotes.
    evidence: list[dict[str, Any]] = field(default_factory=list)
    generated: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "grounded": self.grounded,
            "citations": [c.to_json() for c in self.citations],
        }

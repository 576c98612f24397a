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
    kb: str = ""  # the KB it came from, set by searches over several KBs (rag/filters.py)

    def to_json(self, with_explain: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_explain:
            data.pop("explain")
        if not self.kb:
            data.pop("kb")
        return data


@dataclass(frozen=True, slots=True)
class Citation:
    n: int
    doc_id: str
    source: str
    page: int | None
    text: str
    chunk_id: int | None = None
    kb: str = ""  # the KB it came from, in answers over several KBs

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.kb:
            data.pop("kb")
        return data


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
    # The support check (rag/answer_check.py): share of the model's claims backed by their cited source
    # (None: nothing checked), the sentences left out as unsupported, and whether the answer is the
    # quoted fallback (the documents' sentences, not the model's text).
    supported: float | None = None
    claims: int = 0  # the model's sentences that were checked (declines aside)
    unsupported: list[str] = field(default_factory=list)
    fallback: bool = False
    # The model's first draft showed nothing (a decline, or nothing supported): ``generated`` is then its
    # second look, over only the source sentences closest to the question (rag/chat.py), used or not.
    second_look: bool = False
    first_draft: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "grounded": self.grounded,
            "citations": [c.to_json() for c in self.citations],
        }


@dataclass(slots=True)
class IndexChunk:
    """One chunk on its way from ``rag.indexing`` through the writer into the catalog and the index.

    ``tokens`` are its BM25 tokens. ``vectors`` (embedding model → L2-normalised float32 vector) may be
    given by callers that hold them already (the scale benchmark); otherwise the writer takes them
    from the catalog's embedding cache by ``text_hash``. Adding a chunk field touches this one class.
    """

    ordinal: int
    text: str
    heading: str | None
    page: int | None
    language: str
    text_hash: str
    tokens: list[str]
    vectors: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def index_text(self) -> str:
        """The text that is embedded: the heading (when there is one) above the text."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text

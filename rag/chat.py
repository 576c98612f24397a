"""The answer pipeline: condense the follow-up → retrieve → keep what is relevant → prompt → generate → cite."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from rag.errors import InvalidInput
from rag.evidence import CITATION_MARKER, Quote, squash, supporting_quotes
from rag.llm.base import ChatMessage, GenerationParams, complete
from rag.prompts import detect_language, render
from rag.types import Answer, Citation, Hit

if TYPE_CHECKING:
    from rag.service import RagService



@dataclass(slots=True)
class ChatOptions:
    top_k: int | None = None
    relevance_threshold: float | None = None  # minimum fused score of a hit (0..1)
    bm25_weight: float | None = None
    dense_weight: float | None = None
    params: GenerationParams | None = None
    condense: bool = True
    evidence_quotes: int | None = None  # None: settings.answer.evidence_quotes


@dataclass(slots=True)
class PreparedAnswer:
    question: str
    search_query: str
    language: str
    sources: list[Hit]
    messages: list[ChatMessage]

    @property
    def grounded(self) -> bool:
        return bool(self.sources)


@dataclass(slots=True)
class ChatEvent:
    kind: Literal["sources", "token", "done"]
    text: str = ""
    sources: list[Hit] = field(default_factory=list)
    answer: Answer | None = None


def generation_params(service: RagService, override: GenerationParams | None) -> GenerationParams:
    if override is not None:
        return override
    llm = service.settings.llm
    return GenerationParams(temperature=llm.temperature, top_p=llm.top_p, top_k=llm.top_k,
                            max_tokens=llm.max_tokens, repetition_penalty=llm.repetition_penalty)


def prepare(service: RagService, kb: str, messages: list[ChatMessage], options: ChatOptions) -> PreparedAnswer:
    if not messages or messages[-1].get("role") != "user" or not str(messages[-1].get("content", "")).strip():
        raise InvalidInput("messages must end with a non-empty user message")
    question = str(messages[-1]["content"]).strip()
    language = detect_language(question)
    history = [m for m in messages[:-1] if m.get("role") in {"user", "assistant"}]
    search_query = condense_question(service, history, question, language) if history and options.condense else question
    retrieval = service.settings.retrieval
    hits = service.search(kb, search_query, top_k=options.top_k or retrieval.chat_top_k,
                          bm25_weight=options.bm25_weight, dense_weight=options.dense_weight)
    threshold = retrieval.relevance_threshold if options.relevance_threshold is None else options.relevance_threshold
    sources = [hit for hit in hits if hit.score >= threshold and is_relevant(service, hit)]
    prompt = build_messages(service, question, language, sources, options, history)
    return PreparedAnswer(question, search_query, language, sources, prompt)


def is_relevant(service: RagService, hit: Hit) -> bool:
    """Absolute evidence that a hit is about the question: a close embedding or a strong BM25 match.

    Fused scores are rank-based (the best hit of an off-topic query still scores high), so the
    "documents don't cover this" decision uses each retriever's raw score instead.
    """
    settings = service.settings.retrieval
    similarity = max((v["score"] for k, v in hit.explain.items() if k.startswith("dense:")), default=0.0)
    bm25 = hit.explain.get("bm25", {}).get("score", 0.0)
    return similarity >= settings.min_similarity or bm25 >= settings.min_bm25_score


def condense_question(service: RagService, history: list[ChatMessage], question: str, language: str) -> str:
    """Rewrite a follow-up ("what about hotels?") as a standalone search query using the conversation.

    Small models often echo the previous question instead of rewriting; the follow-up itself is
    therefore always part of the query, and an echo falls back to the last user turn plus the follow-up.
    """
    transcript = "\n".join(f"{m['role']}: {m['content']}" for m in history[-6:])
    prompt = render("condense", language, history=transcript, question=question)
    params = GenerationParams(temperature=0.0, max_tokens=64, repetition_penalty=1.0)
    rewritten = complete(service.chat_model, [{"role": "user", "content": prompt}], params).strip()
    rewritten = rewritten.splitlines()[0].strip().strip('"“”') if rewritten else ""
    last_user = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
    echoed = squash(rewritten) in {squash(last_user), squash(question)}
    if not rewritten or echoed or len(rewritten) > 4 * len(question) + 200:
        return f"{last_user} {question}".strip()
    return f"{rewritten} {question}"


def build_messages(
    service: RagService,
    question: str,
    language: str,
    sources: list[Hit],
    options: ChatOptions,
    history: list[ChatMessage],
) -> list[ChatMessage]:
    system = render("system", language)
    if not sources:
        return [{"role": "system", "content": system},
                {"role": "user", "content": render("no_context", language, question=question)}]
    model = service.chat_model
    params = generation_params(service, options.params)
    budget = model.context_window - params.max_tokens - model.count_tokens(system + question) - 200
    kept: list[Hit] = []
    for hit in sources:  # most relevant first, as many as fit the context window
        cost = model.count_tokens(hit.text) + 20
        if kept and cost > budget:
            break
        kept.append(hit)
        budget -= cost
    sources[:] = kept
    numbered = [{"n": n, "source": hit.source, "page": hit.page, "text": hit.text} for n, hit in enumerate(kept, 1)]
    user = render("answer", language, question=question, sources=numbered)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def evidence_quotes(service: RagService, prepared: PreparedAnswer, answer: str, options: ChatOptions) -> list[Quote]:
    """The source sentences to quote verbatim after the answer (rag/evidence.py)."""
    settings = service.settings.answer
    limit = settings.evidence_quotes if options.evidence_quotes is None else options.evidence_quotes
    if limit <= 0:
        return []
    return supporting_quotes(answer, [hit.text for hit in prepared.sources], prepared.question,
                             min_overlap=settings.evidence_min_overlap, limit=limit)


def citations_for(answer_text: str, sources: list[Hit]) -> list[Citation]:
    cited = [int(n) for n in CITATION_MARKER.findall(answer_text) if 1 <= int(n) <= len(sources)]
    numbers = list(dict.fromkeys(cited)) or list(range(1, len(sources) + 1))
    return [
        Citation(n=n, doc_id=sources[n - 1].doc_id, source=sources[n - 1].source, page=sources[n - 1].page,
                 text=sources[n - 1].text, chunk_id=sources[n - 1].chunk_id)
        for n in numbers
    ]


def stream_answer(
    service: RagService, kb: str, messages: list[ChatMessage], options: ChatOptions | None = None
) -> Iterator[ChatEvent]:
    options = options or ChatOptions()
    prepared = prepare(service, kb, messages, options)
    yield ChatEvent("sources", sources=list(prepared.sources))
    pieces: list[str] = []
    for piece in service.chat_model.stream(prepared.messages, generation_params(service, options.params)):
        pieces.append(piece)
        yield ChatEvent("token", text=piece)
    generated = text = "".join(pieces).strip()
    quotes = evidence_quotes(service, prepared, generated, options) if prepared.grounded else []
    if quotes:
        lines = [render("evidence", prepared.language, quote=quote.text, n=quote.n) for quote in quotes]
        tail = "\n\n" + "\n".join(lines)
        yield ChatEvent("token", text=tail)
        text += tail
    citations = citations_for(text, prepared.sources) if prepared.grounded else []
    answer = Answer(text, prepared.grounded, citations, prepared.question, prepared.search_query,
                    evidence=[{"n": quote.n, "text": quote.text} for quote in quotes], generated=generated)
    yield ChatEvent("done", answer=answer)


def answer_question(
    service: RagService, kb: str, messages: list[ChatMessage], options: ChatOptions | None = None
) -> Answer:
    for event in stream_answer(service, kb, messages, options):
        if event.kind == "done" and event.answer is not None:
            return event.answer
    raise RuntimeError("the answer stream ended without an answer")  # pragma: no cover

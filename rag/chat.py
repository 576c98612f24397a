"""The answer pipeline: condense the follow-up → retrieve → gate → prompt → generate → check → cite.

The model's text reaches the user one checked sentence at a time: a sentence is sent when the next
one begins (or the model stops), if the sources it cites back it (rag/answer_check.py). Declines are
held back to the end: when the model declines, or nothing it says is backed, while retrieval was
strong, the answer is the source sentences closest to the question, quoted as the documents' words.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from rag.answer_check import (
    CheckedAnswer,
    Embed,
    SentenceCheck,
    SupportChecker,
    asks_for_figure,
    best_sentences,
    numbers,
    query_first,
    question_coverage,
    source_sentences,
)
from rag.errors import InvalidInput
from rag.evidence import CITATION_MARKER, Quote, squash, supporting_quotes
from rag.filters import DocumentFilter
from rag.gate import GateThresholds, Relevance, attainable_bm25, judge, subject_terms, term_scorer
from rag.llm.base import ChatMessage, GenerationParams, complete
from rag.prompts import detect_language, render
from rag.types import Answer, Citation, Hit

if TYPE_CHECKING:
    from rag.config import RetrievalSettings, Settings
    from rag.embed import EmbeddingRouter
    from rag.llm.base import ChatModel
    from rag.retrieve.searcher import Mode
    from rag.store.backend import IndexBackend

KBs = str | Sequence[str]  # the KB to answer from, or several (their rankings fused, rag/filters.py)


class AnswerServices(Protocol):
    """The few collaborators the pipeline needs (rag.service.RagService provides them)."""

    settings: Settings
    index: IndexBackend  # the KBs' readers, for the gate's and the support check's BM25 term scores
    router: EmbeddingRouter  # the support check's multilingual embedder

    @property
    def chat_model(self) -> ChatModel: ...

    def search(self, kb: str, query: str, top_k: int | None = None, mode: Mode = "hybrid",
               bm25_weight: float | None = None, dense_weight: float | None = None,
               filter: DocumentFilter | None = None) -> list[Hit]: ...

    def search_many(self, kbs: list[str], query: str, top_k: int | None = None, mode: Mode = "hybrid",
                    bm25_weight: float | None = None, dense_weight: float | None = None,
                    filter: DocumentFilter | None = None) -> list[Hit]: ...


def kb_list(kb: KBs) -> list[str]:
    return [kb] if isinstance(kb, str) else list(kb)


@dataclass(slots=True)
class ChatOptions:
    top_k: int | None = None
    relevance_threshold: float | None = None  # minimum fused score of a hit (0..1)
    bm25_weight: float | None = None
    dense_weight: float | None = None
    params: GenerationParams | None = None
    condense: bool = True
    evidence_quotes: int | None = None  # None: settings.answer.evidence_quotes
    check_support: bool | None = None  # None: settings.answer.check_support
    filter: DocumentFilter | None = None  # answer only from the documents it matches


@dataclass(slots=True)
class PreparedAnswer:
    question: str
    search_query: str
    language: str
    sources: list[Hit]
    messages: list[ChatMessage]
    relevance: list[Relevance] = field(default_factory=list)  # the gate's verdict on each source

    @property
    def grounded(self) -> bool:
        return bool(self.sources)

    @property
    def strong(self) -> bool:
        return any(r.strong for r in self.relevance)


@dataclass(slots=True)
class ChatEvent:
    kind: Literal["sources", "token", "done"]
    text: str = ""
    sources: list[Hit] = field(default_factory=list)
    answer: Answer | None = None


def generation_params(service: AnswerServices, override: GenerationParams | None) -> GenerationParams:
    if override is not None:
        return override
    llm = service.settings.llm
    return GenerationParams(temperature=llm.temperature, top_p=llm.top_p, top_k=llm.top_k,
                            max_tokens=llm.max_tokens, repetition_penalty=llm.repetition_penalty)


def gate_thresholds(settings: RetrievalSettings) -> GateThresholds:
    return GateThresholds(settings.min_bm25_share, dict(settings.min_similarity_by_model), settings.min_similarity,
                          settings.strong_bm25_share, settings.strong_similarity_margin)


def prepare(service: AnswerServices, kb: KBs, messages: list[ChatMessage], options: ChatOptions) -> PreparedAnswer:
    if not messages or messages[-1].get("role") != "user" or not str(messages[-1].get("content", "")).strip():
        raise InvalidInput("messages must end with a non-empty user message")
    question = str(messages[-1]["content"]).strip()
    language = detect_language(question)
    history = [m for m in messages[:-1] if m.get("role") in {"user", "assistant"}]
    search_query = condense_question(service, history, question, language) if history and options.condense else question
    retrieval = service.settings.retrieval
    hits = retrieve(service, kb, search_query, options.top_k or retrieval.chat_top_k, options)
    threshold = retrieval.relevance_threshold if options.relevance_threshold is None else options.relevance_threshold
    judged = [(hit, verdict) for hit, verdict in zip(hits, relevance(service, kb, search_query, hits), strict=True)
              if hit.score >= threshold and verdict.passes]
    sources = [hit for hit, _ in judged]
    prompt = build_messages(service, question, language, sources, options, history)
    verdicts = [verdict for hit, verdict in judged if hit in sources]  # build_messages keeps those that fit
    return PreparedAnswer(question, search_query, language, sources, prompt, verdicts)


def retrieve(service: AnswerServices, kb: KBs, query: str, top_k: int, options: ChatOptions) -> list[Hit]:
    """The KB's hits, or several KBs' fused into one ranking (each hit naming its KB)."""
    kbs = kb_list(kb)
    if len(kbs) > 1:
        return service.search_many(kbs, query, top_k=top_k, bm25_weight=options.bm25_weight,
                                   dense_weight=options.dense_weight, filter=options.filter)
    return service.search(kbs[0], query, top_k=top_k, bm25_weight=options.bm25_weight,
                          dense_weight=options.dense_weight, filter=options.filter)


def relevance(service: AnswerServices, kb: KBs, query: str, hits: list[Hit]) -> list[Relevance]:
    """The gate's verdict on each hit (rag/gate.py): BM25 share of the attainable, cosine per model.

    The attainable BM25 is that of the hit's own KB (each KB has its own term statistics).
    """
    thresholds = gate_thresholds(service.settings.retrieval)
    default = kb_list(kb)[0]
    tokens = subject_terms(query)
    attainable: dict[str, float] = {}
    for hit in hits:
        name = hit.kb or default
        if "bm25" in hit.explain and name not in attainable:
            attainable[name] = attainable_bm25(tokens, term_scorer(service.index.reader(name)))
    return [judge(hit, attainable.get(hit.kb or default, 0.0), thresholds) for hit in hits]


def condense_question(service: AnswerServices, history: list[ChatMessage], question: str, language: str) -> str:
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
    service: AnswerServices,
    question: str,
    language: str,
    sources: list[Hit],
    options: ChatOptions,
    history: list[ChatMessage],
) -> list[ChatMessage]:
    """System rules, the worked example as a finished turn of its own, then the sources and the question.

    The example is a past exchange about other sources, not part of the instructions for this one:
    the model then copies its format without its content (inside the system prompt, "In 1889. [1]"
    was once the answer to "How long is the kettle's warranty?"); the support check drops any such copy.
    """
    system = render("system", language)
    if not sources:
        return [{"role": "system", "content": system},
                {"role": "user", "content": render("no_context", language, question=question)}]
    model = service.chat_model
    params = generation_params(service, options.params)
    example = [{"role": "user", "content": render("example_question", language)},
               {"role": "assistant", "content": render("example_answer", language)}]
    fixed = system + "".join(m["content"] for m in example) + question
    budget = model.context_window - params.max_tokens - model.count_tokens(fixed) - 200
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
    return [{"role": "system", "content": system}, *example, {"role": "user", "content": user}]  # type: ignore[list-item]


def evidence_quotes(service: AnswerServices, prepared: PreparedAnswer, answer: str, options: ChatOptions) -> list[Quote]:
    """The source sentences to quote verbatim after the answer (rag/evidence.py)."""
    settings = service.settings.answer
    limit = settings.evidence_quotes if options.evidence_quotes is None else options.evidence_quotes
    if limit <= 0:
        return []
    texts = [hit.text for hit in prepared.sources]
    claim = CITATION_MARKER.sub("", answer).strip()
    if claim and texts and all(detect_language(text) != detect_language(claim) for text in texts):
        # Characters do not overlap across scripts ("水壶的保修期是两年。" got the purifier's "five-year" sentence):
        # quote the source sentences closest to the answer under the multilingual support model.
        embed = support_embedder(service)
        if embed is not None:
            return [Quote(n, sentence) for n, sentence, _ in best_sentences(claim, texts, limit=limit, embed=embed)]
    return supporting_quotes(answer, texts, prepared.question, min_overlap=settings.evidence_min_overlap, limit=limit)


def citations_for(answer_text: str, sources: list[Hit]) -> list[Citation]:
    cited = [int(n) for n in CITATION_MARKER.findall(answer_text) if 1 <= int(n) <= len(sources)]
    numbers = list(dict.fromkeys(cited)) or list(range(1, len(sources) + 1))
    return [
        Citation(n=n, doc_id=sources[n - 1].doc_id, source=sources[n - 1].source, page=sources[n - 1].page,
                 text=sources[n - 1].text, chunk_id=sources[n - 1].chunk_id, kb=sources[n - 1].kb)
        for n in numbers
    ]


class SentenceBuffer:
    """Cuts streamed text into sentences, each with the citation markers and spacing that follow it.

    A sentence is complete once text after its end (and its markers) has begun, or at ``close``.
    """

    _END = re.compile(r"[。！？；!?;]+|\.(?=\s)|\n")
    _TRAIL = re.compile(r"(?:\s*\[\d{1,2}\])*\s*")
    _PARTIAL_MARKER = re.compile(r"\[\d{0,2}")  # "[" or "[1" at the end: a marker still coming

    def __init__(self) -> None:
        self._text = ""

    def feed(self, piece: str) -> list[str]:
        self._text += piece
        done: list[str] = []
        while True:
            cut = self._complete_cut()
            if cut is None:
                return done
            done.append(self._text[:cut])
            self._text = self._text[cut:]

    def close(self) -> list[str]:
        rest, self._text = self._text, ""
        return [rest] if rest.strip() else []

    def _complete_cut(self) -> int | None:
        for end in self._END.finditer(self._text):
            if end.start() == 0 and end.group() == "\n":
                continue
            trail = self._TRAIL.match(self._text, end.end())
            cut = trail.end() if trail else end.end()
            if cut < len(self._text) and not self._PARTIAL_MARKER.fullmatch(self._text, cut):
                return cut
            return None
        return None


def support_embedder(service: AnswerServices) -> Embed | None:
    """Vectors from the multilingual model that judges support across languages (answer.support_model)."""
    name = service.settings.answer.support_model
    if not name:
        return None
    embedder = service.router.embedder(name)

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(embedder.embed_documents(texts), dtype=np.float32)

    return embed


def across_only(prepared: PreparedAnswer) -> bool:
    """Every source is in the other language than the question."""
    return bool(prepared.sources) and all(detect_language(hit.text) != prepared.language for hit in prepared.sources)


def sentence_ranker(service: AnswerServices, prepared: PreparedAnswer, embed: Embed | None) -> Embed | None:
    """The vectors that rank source sentences against the question: ``embed`` (support_model), or, when every
    source is in the other language, answer.cross_language_model, the question embedded as a query.

    Only rankings use it; the thresholds (fallback_min_similarity, support_min_similarity) stay on support_model.
    """
    name = service.settings.answer.cross_language_model
    if not name or embed is None or not across_only(prepared):
        return embed
    embedder = service.router.embedder(name)
    return query_first(embedder.embed_query, embedder.embed_documents)


def fallback_quotes(service: AnswerServices, prepared: PreparedAnswer, embed: Embed | None) -> list[Quote]:
    """The source sentences to quote as the answer when the model's own text cannot be used.

    Only when retrieval was strong and the best sentence holds enough of the question (its rarer words,
    or, for a source in the other language, a close multilingual embedding): "What does the kettle
    cost?" over a kettle manual with no price gets no quote. When every source is in the other language,
    the sentence's multilingual cosine alone decides (a chunk's cosine across languages is rarely strong).
    """
    settings = service.settings.answer
    if settings.fallback_quotes <= 0 or not prepared.sources:
        return []
    # Across languages a chunk's cosine runs low (0.25-0.35 for the right chunk, benchmarks/data/qa), so it is
    # rarely "strong": there the sentence's own multilingual cosine to the question decides (below).
    if not prepared.strong and not (across_only(prepared) and embed is not None):
        return []
    texts = [hit.text for hit in prepared.sources]
    headings = [hit.heading or "" for hit in prepared.sources]
    ranked = best_sentences(prepared.question, texts, limit=2 * settings.fallback_quotes + 2,
                            embed=sentence_ranker(service, prepared, embed))
    if not ranked:
        return []
    covering = [(n, sentence) for n, sentence, _ in ranked
                if question_coverage(prepared.question, texts, sentence, headings) >= settings.fallback_min_coverage]
    if not prepared.strong:
        covering = []  # across languages only: the words of the question cannot be counted in the sentence
    if not covering:
        across = [hit for hit in prepared.sources if detect_language(hit.text) != prepared.language]
        if embed is None or not across:
            return []
        vectors = embed([prepared.question, ranked[0][1]])
        if float(vectors[1] @ vectors[0]) < settings.fallback_min_similarity:
            return []
        covering = [(n, sentence) for n, sentence, _ in ranked]
    return [Quote(n, sentence) for n, sentence in covering[: settings.fallback_quotes]]


def stream_answer(
    service: AnswerServices, kb: KBs, messages: list[ChatMessage], options: ChatOptions | None = None
) -> Iterator[ChatEvent]:
    options = options or ChatOptions()
    prepared = prepare(service, kb, messages, options)
    yield ChatEvent("sources", sources=list(prepared.sources))
    settings = service.settings.answer
    check = settings.check_support if options.check_support is None else options.check_support
    if not (check and prepared.grounded):
        yield from _stream_unchecked(service, prepared, options)
        return
    embed = support_embedder(service)
    checker = SupportChecker([hit.text for hit in prepared.sources], prepared.question,
                             settings.support_min_lexical, settings.support_min_similarity, embed,
                             settings.support_min_question_coverage, [hit.heading or "" for hit in prepared.sources],
                             sentence_ranker(service, prepared, embed))
    params = generation_params(service, options.params)
    attempt = CheckedStream(checker)
    yield from attempt.run(service.chat_model.stream(prepared.messages, params))
    used, first_draft, focused = attempt, "", None
    grounded, fallback, quotes = True, False, []
    if not attempt.text:
        focused = second_look(service, prepared, embed)
        if focused is not None:
            # The held-back decline or the unsupported draft is never shown: the second look starts the answer,
            # and is checked as the first was (an unanswerable question's second look is declined or unsupported).
            used, first_draft = CheckedStream(checker), attempt.generated
            yield from used.run(service.chat_model.stream(focused.messages, params))
        if not used.text:
            chosen = fallback_quotes(service, prepared, embed)
            fallback = bool(chosen)
            grounded = fallback
            text = render("fallback", prepared.language, quotes=[{"n": q.n, "text": q.text} for q in chosen])
            yield ChatEvent("token", text=text)
    if used.text:
        text = used.text
        if used is attempt or focused is None:
            quotes = evidence_quotes(service, prepared, text, options)
        else:  # the second look answered from these sentences alone: they are its evidence
            quotes = second_look_evidence(focused, text, options, settings.evidence_quotes)
        if quotes:
            tail = "\n\n" + "\n".join(render("evidence", prepared.language, quote=q.text, n=q.n) for q in quotes)
            yield ChatEvent("token", text=tail)
            text += tail
    checked = used.checked
    citations = citations_for(text, prepared.sources) if grounded else []
    answer = Answer(text, grounded, citations, prepared.question, prepared.search_query,
                    evidence=[{"n": q.n, "text": q.text} for q in quotes], generated=used.generated,
                    supported=checked.supported_share, claims=len(checked.claims),
                    unsupported=[s.text for s in _unsupported(checked)],
                    fallback=fallback, second_look=used is not attempt, first_draft=first_draft)
    yield ChatEvent("done", answer=answer)


class CheckedStream:
    """One generation, shown a checked sentence at a time (the sentences its sources do not back are left out)."""

    def __init__(self, checker: SupportChecker) -> None:
        self.checker = checker
        self.checked = CheckedAnswer()
        self.generated = ""
        self._shown: list[str] = []
        self._spacing = ""  # white space after the last shown sentence, sent only if another sentence follows

    @property
    def text(self) -> str:
        return "".join(self._shown)

    def run(self, pieces: Iterator[str]) -> Iterator[ChatEvent]:
        buffer, seen = SentenceBuffer(), []
        for piece in pieces:
            seen.append(piece)
            for sentence in buffer.feed(piece):
                yield from self._take(sentence)
        for sentence in buffer.close():
            yield from self._take(sentence)
        self.generated = "".join(seen).strip()

    def _show(self, text: str) -> Iterator[ChatEvent]:
        body = text.rstrip()
        piece = (self._spacing + body) if self._shown else body.lstrip()
        self._spacing = text[len(body):]
        self._shown.append(piece)
        yield ChatEvent("token", text=piece)

    def _take(self, sentence: str) -> Iterator[ChatEvent]:
        if not CITATION_MARKER.sub("", sentence).strip():  # markers alone: they belong to the sentence before
            if self._shown and self.checked.sentences and self.checked.sentences[-1].supported:
                yield from self._show(sentence)
            return
        result = self.checker.check_sentence(sentence.strip())
        self.checked.sentences.append(result)
        if result.supported:
            yield from self._show(sentence)


@dataclass(frozen=True, slots=True)
class SecondLook:
    messages: list[ChatMessage]
    sentences: list[Quote]  # the source sentences it shows the model, by source number


def second_look_evidence(look: SecondLook, answer: str, options: ChatOptions, default_limit: int) -> list[Quote]:
    """The second look's sentences as the evidence under its answer (those the answer does not already hold)."""
    limit = default_limit if options.evidence_quotes is None else options.evidence_quotes
    held = squash(CITATION_MARKER.sub("", answer))
    return [quote for quote in look.sentences if squash(quote.text) not in held][: max(limit, 0)]


def second_look(service: AnswerServices, prepared: PreparedAnswer, embed: Embed | None) -> SecondLook | None:
    """The prompt of the second look: the question over only the source sentences closest to it.

    Each source keeps its number (citations still name the whole chunk) and holds just its chosen
    sentences, in the order they have in it. None when the second look is off or nothing is chosen.
    """
    limit = service.settings.answer.second_look_sentences
    if limit <= 0 or not prepared.sources:
        return None
    texts = [hit.text for hit in prepared.sources]
    chosen = best_sentences(prepared.question, texts, limit=3 * limit, embed=sentence_ranker(service, prepared, embed))
    if asks_for_figure(prepared.question) and any(numbers(sentence) for _, sentence, _ in chosen):
        chosen = [item for item in chosen if numbers(item[1])]  # the first draft's answer had no figure, or a wrong one
    chosen = chosen[:limit]
    if not chosen:
        return None
    by_source: dict[int, set[str]] = {}
    for n, sentence, _ in chosen:
        by_source.setdefault(n, set()).add(sentence)
    numbered = []
    for n in sorted(by_source):
        hit = prepared.sources[n - 1]
        kept = [sentence for sentence in source_sentences(hit.text) if sentence in by_source[n]]
        numbered.append({"n": n, "source": hit.source, "page": hit.page, "text": " ".join(kept)})
    user = render("answer", prepared.language, question=prepared.question, sources=numbered)
    return SecondLook([*prepared.messages[:-1], {"role": "user", "content": user}],
                      [Quote(n, sentence) for n, sentence, _ in chosen])


def _unsupported(checked: CheckedAnswer) -> list[SentenceCheck]:
    return [s for s in checked.claims if not s.supported]


def _stream_unchecked(service: AnswerServices, prepared: PreparedAnswer, options: ChatOptions) -> Iterator[ChatEvent]:
    """The model's text as it comes (no sources to check it against, or the check switched off)."""
    pieces: list[str] = []
    for piece in service.chat_model.stream(prepared.messages, generation_params(service, options.params)):
        pieces.append(piece)
        yield ChatEvent("token", text=piece)
    generated = text = "".join(pieces).strip()
    quotes = evidence_quotes(service, prepared, generated, options) if prepared.grounded else []
    if quotes:
        tail = "\n\n" + "\n".join(render("evidence", prepared.language, quote=quote.text, n=quote.n) for quote in quotes)
        yield ChatEvent("token", text=tail)
        text += tail
    citations = citations_for(text, prepared.sources) if prepared.grounded else []
    answer = Answer(text, prepared.grounded, citations, prepared.question, prepared.search_query,
                    evidence=[{"n": quote.n, "text": quote.text} for quote in quotes], generated=generated)
    yield ChatEvent("done", answer=answer)


def answer_question(
    service: AnswerServices, kb: KBs, messages: list[ChatMessage], options: ChatOptions | None = None
) -> Answer:
    for event in stream_answer(service, kb, messages, options):
        if event.kind == "done" and event.answer is not None:
            return event.answer
    raise RuntimeError("the answer stream ended without an answer")  # pragma: no cover

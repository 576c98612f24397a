"""What the answering front doors share: generation settings, citations, and the chat routes' SSE shape.

``/api/kbs/{kb}/chat`` and ``/api/conversations/{id}/messages`` stream the same events (one shape, one
place); ``/v1/chat/completions`` streams OpenAI's chunks instead but reads the same ``ChatEvent``s.
All of them call ``RagService`` only: the chat pipeline (rag.chat) is behind the facade.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request

from rag.api.errors import request_id_of
from rag.api.schemas import AnswerFields, CitationOut, FilterIn, GenerationFields, HitOut
from rag.api.state import ApiState
from rag.api.streaming import ThreadedIterator, sse
from rag.errors import RagError
from rag.filters import DocumentFilter
from rag.llm.base import GenerationParams
from rag.service import RagService
from rag.types import Citation

if TYPE_CHECKING:
    from rag.service import ChatEvent, ChatOptions

log = logging.getLogger("rag.api")

T = TypeVar("T")

SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "ask's shape; with stream=true an event stream of `data: {json}` lines: "
        '{"type": "sources"}, {"type": "token", "text"}..., {"type": "done", answer, grounded, citations}, '
        "then `data: [DONE]`",
        "content": {"text/event-stream": {}},
    }
}


def params_from(service: RagService, fields: GenerationFields | None = None, max_tokens: int | None = None,
                stop: list[str] | None = None) -> GenerationParams:
    """The configured generation defaults, overridden by whatever the request set."""
    params = service.generation_defaults()
    overrides: dict[str, object] = {}
    if fields is not None:
        overrides = {name: value for name in ("temperature", "top_p", "max_tokens", "repetition_penalty", "seed")
                     if (value := getattr(fields, name, None)) is not None}
    if max_tokens is not None:
        overrides["max_tokens"] = max_tokens
    if stop:
        overrides["stop"] = stop
    return replace(params, **overrides)  # type: ignore[arg-type]


def filter_of(body_filter: FilterIn | None) -> DocumentFilter | None:
    return body_filter.to_filter() if body_filter is not None else None


def answer_options(service: RagService, body: AnswerFields, condense: bool = True) -> ChatOptions:
    """The pipeline's options from what a request set (the rest: the configured defaults)."""
    return service.chat_options(top_k=body.top_k, relevance_threshold=body.relevance_threshold,
                                params=params_from(service, body), condense=condense,
                                evidence_quotes=body.evidence_quotes, filter=filter_of(body.filter))


def citations_out(citations: list[Citation]) -> list[CitationOut]:
    return [CitationOut(**citation.to_json()) for citation in citations]


def event_json(event: ChatEvent) -> dict[str, Any]:
    """One chat event as the chat routes' SSE ``data``."""
    if event.kind == "sources":
        return {"type": "sources", "sources": [HitOut(**hit.to_json()).model_dump(exclude={"explain"})
                                               for hit in event.sources]}
    if event.kind == "token":
        return {"type": "token", "text": event.text}
    answer = event.answer
    assert answer is not None
    return {"type": "done", "answer": answer.answer, "grounded": answer.grounded,
            "citations": [c.model_dump() for c in citations_out(answer.citations)],
            "evidence": answer.evidence, "search_query": answer.search_query}


async def answer_stream(first: T, events: ThreadedIterator[T], to_json: Callable[[T], dict[str, Any]],
                        state: ApiState, request: Request, started: float, label: str) -> AsyncIterator[str]:
    """The SSE body of a chat route: each event, an ``error`` event if the answer fails, then ``[DONE]``."""
    try:
        yield sse(to_json(first))
        async for event in events:
            yield sse(to_json(event))
        state.metrics.chat.labels(label).observe(time.perf_counter() - started)
    except RagError as exc:
        yield sse({"type": "error", "error": {"code": exc.code, "message": exc.message}})
    except Exception:
        request_id = request_id_of(request)
        log.exception("request %s: %s stream failed", request_id, label)
        yield sse({"type": "error", "error": {"code": "internal_error", "request_id": request_id,
                                              "message": f"internal server error (request id {request_id})"}})
    finally:
        await events.aclose()
    yield sse("[DONE]")

"""Grounded chat over one KB: ask's JSON shape, or Server-Sent Events as the answer is generated."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.api.answers import citations_out, params_from
from rag.api.auth import Principal, Role, requires
from rag.api.bounds import check_conversation
from rag.api.errors import request_id_of
from rag.api.schemas import ChatRequest, ChatResponse, EvidenceOut, HitOut, KBName
from rag.api.state import ApiState, api_state
from rag.api.streaming import SSE_HEADERS, ThreadedIterator, sse
from rag.chat import ChatEvent, ChatOptions, answer_question, stream_answer
from rag.errors import RagError

log = logging.getLogger("rag.api")

router = APIRouter(prefix="/api/kbs/{kb}", tags=["chat"])

_SSE_DOC = {
    200: {
        "description": "ask's shape; with stream=true an event stream of `data: {json}` lines: "
        '{"type": "sources"}, {"type": "token", "text"}..., {"type": "done", answer, grounded, citations}, '
        "then `data: [DONE]`",
        "content": {"text/event-stream": {}},
    }
}


@router.post("/chat", response_model=ChatResponse, responses=_SSE_DOC)
async def chat(kb: KBName, body: ChatRequest, request: Request, state: ApiState = Depends(api_state),
               _: Principal = Depends(requires(Role.reader))) -> Any:
    service = state.service
    check_conversation([message.content for message in body.messages], state.settings.server)
    options = ChatOptions(top_k=body.top_k, relevance_threshold=body.relevance_threshold,
                          params=params_from(service, body), condense=body.condense,
                          evidence_quotes=body.evidence_quotes)
    messages: list[Any] = [message.model_dump() for message in body.messages]
    started = time.perf_counter()
    if not body.stream:
        answer = await run_in_threadpool(answer_question, service, kb, messages, options)
        state.metrics.chat.labels("kb").observe(time.perf_counter() - started)
        return ChatResponse(answer=answer.answer, grounded=answer.grounded,
                            citations=citations_out(answer.citations),
                            evidence=[EvidenceOut(**quote) for quote in answer.evidence],
                            search_query=answer.search_query)
    events = ThreadedIterator(stream_answer(service, kb, messages, options))
    first = await anext(events)  # retrieval happens here: an unknown KB is still a plain 404
    return StreamingResponse(_event_stream(first, events, state, request, started),
                             media_type="text/event-stream", headers=SSE_HEADERS)


async def _event_stream(first: ChatEvent, events: ThreadedIterator[ChatEvent], state: ApiState,
                        request: Request, started: float) -> AsyncIterator[str]:
    try:
        yield sse(_event_json(first))
        async for event in events:
            yield sse(_event_json(event))
        state.metrics.chat.labels("kb").observe(time.perf_counter() - started)
    except RagError as exc:
        yield sse({"type": "error", "error": {"code": exc.code, "message": exc.message}})
    except Exception:
        request_id = request_id_of(request)
        log.exception("request %s: chat stream failed", request_id)
        yield sse({"type": "error", "error": {"code": "internal_error", "request_id": request_id,
                                              "message": f"internal server error (request id {request_id})"}})
    finally:
        await events.aclose()
    yield sse("[DONE]")


def _event_json(event: ChatEvent) -> dict[str, Any]:
    if event.kind == "sources":
        return {"type": "sources", "sources": [HitOut(**hit.to_json()).model_dump(exclude={"explain"}) for hit in event.sources]}
    if event.kind == "token":
        return {"type": "token", "text": event.text}
    answer = event.answer
    assert answer is not None
    return {"type": "done", "answer": answer.answer, "grounded": answer.grounded,
            "citations": [c.model_dump() for c in citations_out(answer.citations)],
            "evidence": answer.evidence, "search_query": answer.search_query}

"""Grounded chat over one KB (or more): ask's JSON shape, or Server-Sent Events as the answer is generated."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.api.answers import SSE_DOC, answer_options, answer_stream, citations_out, event_json
from rag.api.auth import Principal, Role, requires
from rag.api.bounds import check_conversation
from rag.api.schemas import ChatRequest, ChatResponse, EvidenceOut, KBName
from rag.api.state import ApiState, api_state
from rag.api.streaming import SSE_HEADERS, ThreadedIterator

router = APIRouter(prefix="/api/kbs/{kb}", tags=["chat"])


@router.post("/chat", response_model=ChatResponse, responses=SSE_DOC)
async def chat(kb: KBName, body: ChatRequest, request: Request, state: ApiState = Depends(api_state),
               who: Principal = Depends(requires(Role.reader))) -> Any:
    """`filter` answers only from the documents it matches; `kbs` adds KBs whose rankings are fused with
    this one's (citations then name their `kb`)."""
    service = state.service
    kbs = list(dict.fromkeys([kb, *(body.kbs or [])]))
    for name in kbs:
        who.check(Role.reader, name)
    check_conversation([message.content for message in body.messages], state.settings.server)
    options = answer_options(service, body, condense=body.condense)
    messages: list[Any] = [message.model_dump() for message in body.messages]
    target: str | list[str] = kb if len(kbs) == 1 else kbs
    started = time.perf_counter()
    if not body.stream:
        answer = await run_in_threadpool(service.answer, target, messages, options)
        state.metrics.chat.labels("kb").observe(time.perf_counter() - started)
        return ChatResponse(answer=answer.answer, grounded=answer.grounded,
                            citations=citations_out(answer.citations),
                            evidence=[EvidenceOut(**quote) for quote in answer.evidence],
                            search_query=answer.search_query)
    events = ThreadedIterator(service.stream_answer(target, messages, options))
    first = await anext(events)  # retrieval happens here: an unknown KB is still a plain 404
    return StreamingResponse(answer_stream(first, events, event_json, state, request, started, "kb"),
                             media_type="text/event-stream", headers=SSE_HEADERS)

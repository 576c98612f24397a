"""Conversations kept in the catalog: list, create, read, rename, delete, ask in one, rate an answer.

A conversation belongs to the API key that made it (its label; ``local`` in keyless mode). A key sees only
its own (another's reads as 404); admin keys for all KBs see everyone's. Asking goes through the same chat pipeline
as ``/api/kbs/{kb}/chat`` (``RagService.stream_answer``), with the stored messages as the history.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.api.answers import SSE_DOC, answer_options, answer_stream, citations_out, event_json
from rag.api.audit import record
from rag.api.auth import ANONYMOUS_ADMIN, Principal, Role, requires
from rag.api.bounds import check_question
from rag.api.schemas import (
    ConversationAnswer,
    ConversationCreate,
    ConversationDeleted,
    ConversationDetail,
    ConversationList,
    ConversationMessage,
    ConversationOut,
    ConversationUpdate,
    EvidenceOut,
    FeedbackIn,
    FeedbackOut,
    StoredMessageOut,
)
from rag.api.state import ApiState, api_state
from rag.api.streaming import SSE_HEADERS, ThreadedIterator
from rag.store.conversations import Conversation

if TYPE_CHECKING:
    from rag.service import ChatEvent

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

LOCAL_OWNER = "local"


def owner_of(principal: Principal) -> str:
    """Who a new conversation belongs to: the key's label, or "local" without keys."""
    return LOCAL_OWNER if principal is ANONYMOUS_ADMIN else principal.name


def visible_to(principal: Principal) -> str | None:
    """The owner whose conversations ``principal`` may see; None: all (admin keys for all KBs)."""
    return None if principal.role is Role.admin and principal.kbs is None else owner_of(principal)


def conversation_out(conversation: Conversation) -> ConversationOut:
    return ConversationOut(**conversation.to_json())


def _check_kbs(principal: Principal, kbs: list[str]) -> None:
    for kb in kbs:
        principal.check(Role.reader, kb)


@router.get("", response_model=ConversationList)
def list_conversations(state: ApiState = Depends(api_state),
                       who: Principal = Depends(requires(Role.reader))) -> ConversationList:
    """Newest first: the caller's own conversations (an admin key: everyone's)."""
    found = state.service.list_conversations(visible_to(who))
    return ConversationList(conversations=[conversation_out(c) for c in found])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConversationOut)
def create_conversation(body: ConversationCreate, request: Request, state: ApiState = Depends(api_state),
                        who: Principal = Depends(requires(Role.reader))) -> ConversationOut:
    _check_kbs(who, body.kbs)
    conversation = state.service.create_conversation(owner_of(who), body.kbs, body.title)
    record(request, kb=body.kbs[0], conversation=conversation.id)
    return conversation_out(conversation)


@router.get("/{conversation_id}", response_model=ConversationDetail)
def get_conversation(conversation_id: str, state: ApiState = Depends(api_state),
                     who: Principal = Depends(requires(Role.reader))) -> ConversationDetail:
    conversation, messages = state.service.get_conversation(conversation_id, visible_to(who))
    ratings = state.service.conversations.feedback_of([m.id for m in messages if m.role == "assistant"])
    out = []
    for message in messages:
        data = message.to_json()
        if message.role == "assistant":
            data["rating"] = ratings.get(message.id)
        out.append(StoredMessageOut(**data))
    return ConversationDetail(**conversation.to_json(), messages=out)


@router.patch("/{conversation_id}", response_model=ConversationOut)
def rename_conversation(conversation_id: str, body: ConversationUpdate, request: Request,
                        state: ApiState = Depends(api_state),
                        who: Principal = Depends(requires(Role.reader))) -> ConversationOut:
    record(request, conversation=conversation_id)
    return conversation_out(state.service.rename_conversation(conversation_id, visible_to(who), body.title))


@router.delete("/{conversation_id}", response_model=ConversationDeleted)
def delete_conversation(conversation_id: str, request: Request, state: ApiState = Depends(api_state),
                        who: Principal = Depends(requires(Role.reader))) -> ConversationDeleted:
    """Deletes the conversation and its messages; feedback given on its answers is kept."""
    record(request, conversation=conversation_id)
    state.service.delete_conversation(conversation_id, visible_to(who))
    return ConversationDeleted(id=conversation_id)


@router.post("/{conversation_id}/messages", response_model=ConversationAnswer, responses=SSE_DOC)
async def post_message(conversation_id: str, body: ConversationMessage, request: Request,
                       state: ApiState = Depends(api_state),
                       who: Principal = Depends(requires(Role.reader))) -> Any:
    """Ask in the conversation (all of its KBs; `filter` narrows this question to some documents): ask's
    shape plus `message_id`, or (stream=true) the chat route's events, the `done` event carrying
    `message_id`. The question and its answer are stored once the answer is done."""
    service = state.service
    check_question(body.content, state.settings.server)
    owner = visible_to(who)
    conversation, _ = await run_in_threadpool(service.get_conversation, conversation_id, owner)
    _check_kbs(who, conversation.kbs)
    record(request, kb=conversation.kbs[0], conversation=conversation_id)
    options = answer_options(service, body)
    started = time.perf_counter()
    if not body.stream:
        answer, message_id = await run_in_threadpool(service.ask_in_conversation, conversation_id, owner,
                                                     body.content, options)
        state.metrics.chat.labels("conversation").observe(time.perf_counter() - started)
        return ConversationAnswer(answer=answer.answer, grounded=answer.grounded,
                                  citations=citations_out(answer.citations),
                                  evidence=[EvidenceOut(**quote) for quote in answer.evidence],
                                  search_query=answer.search_query, message_id=message_id)
    events = ThreadedIterator(service.stream_in_conversation(conversation_id, owner, body.content, options))
    first = await anext(events)  # retrieval happens here: a missing KB is still a plain 404
    return StreamingResponse(answer_stream(first, events, _with_id, state, request, started, "conversation"),
                             media_type="text/event-stream", headers=SSE_HEADERS)


def _with_id(item: tuple[ChatEvent, int | None]) -> dict[str, Any]:
    """The chat route's event, the `done` one with the stored answer's `message_id`."""
    event, message_id = item
    data = event_json(event)
    if message_id is not None:
        data["message_id"] = message_id
    return data


@router.post("/{conversation_id}/messages/{message_id}/feedback", response_model=FeedbackOut)
def rate_answer(conversation_id: str, message_id: int, body: FeedbackIn, request: Request,
                state: ApiState = Depends(api_state),
                who: Principal = Depends(requires(Role.reader))) -> FeedbackOut:
    """Rate an answer (again: the new rating replaces the old). Stored with the question, the answer,
    its sources and settings; `rag feedback export` writes them as a question file for `rag eval`."""
    record(request, conversation=conversation_id, message=message_id)
    feedback = state.service.rate_answer(conversation_id, visible_to(who), message_id, body.rating, body.comment,
                                           body.expected)
    record(request, kb=feedback.kb)
    return FeedbackOut(message_id=feedback.message_id, rating=body.rating, comment=feedback.comment)

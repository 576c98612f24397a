"""OpenAI-compatible /v1: chat completions (model "kb:NAME" answers from a KB), models, embeddings.

Streams are exactly OpenAI's: ``data: {chat.completion.chunk}`` lines (the first delta carries the
role, the last has ``finish_reason: "stop"``), then ``data: [DONE]``. KB answers add a ``sources``
field (and ``grounded``) to the final chunk or to the non-streamed completion.

Extensions of the request (OpenAI clients pass them as ``extra_body``): ``model: "kb:a+b"`` or ``kbs``
asks several KBs (rankings fused), ``filter`` narrows to some documents, ``conversation_id`` records the
exchange in one of the caller's conversations (the request stays stateless: the history is what the
client sends), the stored answer's id coming back as ``message_id``.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.api.answers import citations_out, filter_of, params_from
from rag.api.auth import Principal, Role, requires
from rag.api.bounds import check_conversation, check_length
from rag.api.conversations import visible_to
from rag.api.errors import ModelNotFound, request_id_of
from rag.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    CompletionChoice,
    EmbeddingItem,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
    OpenAIChatRequest,
    Usage,
)
from rag.api.state import ApiState, api_state
from rag.api.streaming import SSE_HEADERS, ThreadedIterator, sse
from rag.errors import InvalidInput, RagError
from rag.llm.base import ChatMessage
from rag.service import RagService
from rag.types import Answer

if TYPE_CHECKING:
    import numpy as np

    from rag.service import ChatEvent

log = logging.getLogger("rag.api")

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

KB_PREFIX = "kb:"


# -- chat completions ----------------------------------------------------------------------------


def _messages(body: OpenAIChatRequest) -> list[ChatMessage]:
    roles = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
    converted: list[Any] = [{"role": roles[m.role], "content": m.text()} for m in body.messages if m.role in roles]
    if not converted or converted[-1]["role"] != "user" or not converted[-1]["content"].strip():
        raise InvalidInput("messages must end with a non-empty user message")
    return converted  # type: ignore[no-any-return]


def _kbs_of(model: str) -> list[str]:
    """The KBs a model id names: "kb:a" one, "kb:a+b" several ('+' is never part of a KB name)."""
    if not model.startswith(KB_PREFIX):
        return []
    names = model[len(KB_PREFIX):].split("+")
    if any(not name for name in names):
        raise InvalidInput(f"model: '{model}' names an empty knowledge base (use kb:NAME or kb:A+B)")
    return names


def _kbs(body: OpenAIChatRequest) -> list[str]:
    """The KBs to answer from: the model's and the ``kbs`` extension's, each once."""
    named = _kbs_of(body.model)
    if (body.kbs or body.filter) and not named:
        raise InvalidInput('kbs, filter: only for knowledge-base models (model "kb:NAME")')
    return list(dict.fromkeys([*named, *(body.kbs or [])]))


def _events(service: RagService, body: OpenAIChatRequest, kbs: list[str],
            messages: list[ChatMessage]) -> Iterator[ChatEvent]:
    """KB models answer through the RAG pipeline; any other model id is the LLM without retrieval."""
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    params = params_from(service, None, max_tokens=body.max_completion_tokens or body.max_tokens, stop=stop)
    params.temperature = body.temperature if body.temperature is not None else params.temperature
    params.top_p = body.top_p if body.top_p is not None else params.top_p
    params.seed = body.seed
    if kbs:
        options = service.chat_options(top_k=body.retrieval_top_k, params=params, filter=filter_of(body.filter))
        return service.stream_answer(kbs[0] if len(kbs) == 1 else kbs, messages, options)
    return service.stream_llm(messages, params)  # loads the model first: a missing one is a 503, not a broken stream


class _Recorder:
    """Stores a KB answer in the caller's conversation (``conversation_id``), once it is complete."""

    def __init__(self, service: RagService, conversation_id: str | None, owner: str | None, question: str,
                 kbs: list[str]) -> None:
        self.service, self.conversation_id, self.owner = service, conversation_id, owner
        self.question, self.kbs = question, kbs

    def check(self) -> None:
        if self.conversation_id is None:
            return
        if not self.kbs:
            raise InvalidInput('conversation_id: only answers of knowledge-base models (model "kb:NAME") are recorded')
        self.service.get_conversation(self.conversation_id, self.owner)  # someone else's reads as 404

    async def record(self, answer: Answer | None) -> int | None:
        if self.conversation_id is None or answer is None:
            return None
        return await run_in_threadpool(self.service.record_exchange, self.conversation_id, self.owner,
                                       self.question, answer, self.kbs)


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "a completion, or with stream=true OpenAI's chunk stream"}})
async def chat_completions(body: OpenAIChatRequest, request: Request, state: ApiState = Depends(api_state),
                           who: Principal = Depends(requires(Role.reader))) -> Any:
    kbs = _kbs(body)
    for kb in kbs:
        who.check(Role.reader, kb)
    messages = _messages(body)
    check_conversation([message["content"] for message in messages], state.settings.server)
    recorder = _Recorder(state.service, body.conversation_id, visible_to(who), messages[-1]["content"], kbs)
    await run_in_threadpool(recorder.check)
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    started = time.perf_counter()
    endpoint = "openai_kb" if kbs else "openai_llm"
    events = ThreadedIterator(await run_in_threadpool(_events, state.service, body, kbs, messages))
    first = await anext(events)  # retrieval (or the model load) happens here, so failures keep their status
    if body.stream:
        include_usage = bool((getattr(body, "stream_options", None) or {}).get("include_usage"))
        chunks = _chunk_stream(first, events, state, request, body.model, completion_id, created, messages,
                               include_usage, started, endpoint, recorder)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
    pieces: list[str] = []
    final: ChatEvent = first
    try:
        async for event in events:
            if event.kind == "token":
                pieces.append(event.text)
            final = event
    finally:
        await events.aclose()
    state.metrics.chat.labels(endpoint).observe(time.perf_counter() - started)
    text = "".join(pieces).strip()
    completion = ChatCompletion(
        id=completion_id, created=created, model=body.model,
        choices=[CompletionChoice(message=AssistantMessage(content=text))],
        usage=await run_in_threadpool(_usage, state.service, messages, text),
    )
    if kbs and final.answer is not None:
        completion.sources = citations_out(final.answer.citations)
        completion.grounded = final.answer.grounded
        completion.message_id = await recorder.record(final.answer)
    return completion


def _usage(service: RagService, messages: list[ChatMessage], text: str) -> Usage:
    model = service.chat_model
    prompt = sum(model.count_tokens(m["content"]) for m in messages)
    completion = model.count_tokens(text)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, Any],
           finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}


async def _chunk_stream(first: ChatEvent, events: ThreadedIterator[ChatEvent], state: ApiState, request: Request,
                        model: str, completion_id: str, created: int, messages: list[ChatMessage],
                        include_usage: bool, started: float, endpoint: str,
                        recorder: _Recorder) -> AsyncIterator[str]:
    is_kb = bool(recorder.kbs)
    pieces: list[str] = []
    yield sse(_chunk(completion_id, created, model, {"role": "assistant", "content": ""}))
    try:
        event = first
        async for following in _prepend(first, events):
            event = following
            if event.kind == "token" and event.text:
                pieces.append(event.text)
                yield sse(_chunk(completion_id, created, model, {"content": event.text}))
        extra: dict[str, Any] = {}
        if is_kb and event.answer is not None:
            extra = {"sources": [c.model_dump() for c in citations_out(event.answer.citations)],
                     "grounded": event.answer.grounded}
            message_id = await recorder.record(event.answer)
            if message_id is not None:
                extra["message_id"] = message_id
        yield sse(_chunk(completion_id, created, model, {}, "stop", **extra))
        state.metrics.chat.labels(endpoint).observe(time.perf_counter() - started)
        if include_usage:
            usage = await run_in_threadpool(_usage, state.service, messages, "".join(pieces))
            yield sse({"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": usage.model_dump()})
    except RagError as exc:
        yield sse({"error": {"code": exc.code, "message": exc.message}})
    except Exception:
        request_id = request_id_of(request)
        log.exception("request %s: completion stream failed", request_id)
        yield sse({"error": {"code": "internal_error", "request_id": request_id,
                             "message": f"internal server error (request id {request_id})"}})
    finally:
        await events.aclose()
    yield sse("[DONE]")


async def _prepend(first: ChatEvent, rest: ThreadedIterator[ChatEvent]) -> AsyncIterator[ChatEvent]:
    yield first
    async for event in rest:
        yield event


# -- models --------------------------------------------------------------------------------------


def _llm_name(service: RagService) -> str | None:
    try:
        return service.chat_model.name
    except RagError as exc:
        log.warning("the chat model is not available: %s", exc.message)
        return None


@router.get("/models", response_model=ModelList, response_model_exclude_none=True)
def list_models(state: ApiState = Depends(api_state), who: Principal = Depends(requires(Role.reader))) -> ModelList:
    cards = [ModelCard(id=f"{KB_PREFIX}{kb.name}", created=int(kb.created_at), owned_by="rag",
                       description=kb.description or None)
             for kb in state.service.list_kbs() if who.may_use(kb.name)]
    llm = _llm_name(state.service)
    if llm is not None:
        cards.append(ModelCard(id=llm, created=0, owned_by="local",
                               description="the local LLM without retrieval"))
    return ModelList(data=cards)


# -- embeddings ----------------------------------------------------------------------------------


@router.post("/embeddings", response_model=EmbeddingResponse)
def embeddings(body: EmbeddingRequest, state: ApiState = Depends(api_state),
               _: Principal = Depends(requires(Role.reader))) -> EmbeddingResponse:
    name = body.model or state.settings.embedding.english
    allowed = state.service.embedding_models()
    if name not in allowed:
        raise ModelNotFound(f"unknown embedding model '{name}' (available: {', '.join(allowed)})")
    texts = [body.input] if isinstance(body.input, str) else body.input
    server = state.settings.server
    if not texts or len(texts) > server.max_embedding_inputs:
        raise InvalidInput(f"input: give 1 to {server.max_embedding_inputs} texts (server.max_embedding_inputs)")
    if any(not text.strip() for text in texts):
        raise InvalidInput("input: texts must not be empty")
    for position, text in enumerate(texts):
        check_length(text, server.max_embedding_tokens, f"input[{position}]")
    vectors = state.service.embed_texts(name, texts)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise InvalidInput(f"dimensions: model '{name}' produces {vectors.shape[1]} dimensions")
    data = [EmbeddingItem(index=i, embedding=_encode(vector, body.encoding_format)) for i, vector in enumerate(vectors)]
    tokens = sum(len(text.split()) for text in texts)  # whitespace words: the embedders' tokenizers differ
    return EmbeddingResponse(data=data, model=name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]

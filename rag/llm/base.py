"""The chat-model interface every LLM backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(slots=True)
class GenerationParams:
    temperature: float = 0.1
    top_p: float = 0.9
    top_k: int = 40
    max_tokens: int = 384
    repetition_penalty: float = 1.05
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


class ChatModel(Protocol):
    """Streams a reply to a list of messages, one text piece at a time."""

    name: str
    context_window: int

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


def complete(model: ChatModel, messages: list[ChatMessage], params: GenerationParams) -> str:
    return "".join(model.stream(messages, params))


def openai_chat_body(messages: list[ChatMessage], params: GenerationParams) -> dict[str, Any]:
    """The standard OpenAI chat-completions fields of a streaming request; backends add their extras."""
    body: dict[str, Any] = {
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "stream": True,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body

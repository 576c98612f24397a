"""Chat backend for any OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, OpenAI itself): SSE streaming."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from rag.errors import InvalidInput, ModelUnavailable
from rag.llm.base import ChatMessage, GenerationParams, openai_chat_body

_CHARS_PER_TOKEN = 3.0  # count_tokens approximation; see its docstring


class OpenAICompatChatModel:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        context_window: int = 4096,
        timeout: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.context_window = context_window
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )
        # OpenAI itself rejects unknown fields; the local servers accept top_k and the repeat penalty.
        self._extended = "api.openai.com" not in self.base_url

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]:
        url = f"{self.base_url}/chat/completions"
        body = self._body(messages, params)
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _http_error(url, response)
                yield from _sse_deltas(response, url)
        except httpx.TimeoutException as exc:
            raise ModelUnavailable(f"LLM server at {url} timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise ModelUnavailable(f"LLM server at {url} is unreachable: {exc}") from exc

    def count_tokens(self, text: str) -> int:
        """Approximation: the OpenAI API has no tokenizer endpoint. One CJK character is about one token
        and other text about 4 characters a token; the estimate leans high so prompts stay in budget."""
        cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
        other = len(text) - cjk
        return cjk + int(other / _CHARS_PER_TOKEN + 0.999)

    def close(self) -> None:
        self._client.close()

    def _body(self, messages: list[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        body = {"model": self.name, **openai_chat_body(messages, params)}
        if self._extended:
            body["top_k"] = params.top_k
            body["repetition_penalty"] = params.repetition_penalty  # vLLM / TGI name
            body["repeat_penalty"] = params.repetition_penalty  # llama.cpp / Ollama name
        return body


def _sse_deltas(response: httpx.Response, url: str) -> Iterator[str]:
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), "event:" lines
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ModelUnavailable(f"LLM server at {url} sent malformed SSE data: {data[:200]!r}") from exc
        if "error" in chunk:
            raise ModelUnavailable(f"LLM server at {url} reported an error: {_message(chunk['error'])}")
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text


def _http_error(url: str, response: httpx.Response) -> Exception:
    try:
        detail = _message(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        detail = response.text[:300]
    message = f"LLM server at {url} answered HTTP {response.status_code}: {detail}"
    if response.status_code in (400, 413, 422):
        return InvalidInput(message)
    return ModelUnavailable(message)


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)

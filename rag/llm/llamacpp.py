"""Default chat backend: llama.cpp in-process through ``xllamacpp`` (its server loop, OpenAI-format requests).

``Server.handle_chat_completions`` blocks its calling thread and calls ``on_chunk`` synchronously in that
thread as chunks are produced, so ``stream`` runs it on a worker thread and hands chunks over a queue.
Returning True from ``on_chunk`` makes xllamacpp stop reading, which cancels the generation.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from rag.errors import InvalidInput, ModelUnavailable
from rag.llm.base import ChatMessage, GenerationParams, openai_chat_body

log = logging.getLogger(__name__)

_DONE = object()
# The shared KV prefix survives only within one slot; llama.cpp picks the slot by longest common prefix.
_N_PARALLEL = 1
_PROMPT_CACHE_RAM_MIB = 512
# Process-wide: llama.cpp instances share the CPU cores, so generation is serialised across all of them.
_generation_lock = threading.Lock()


class LlamaCppChatModel:
    """One llama.cpp model. Requests are serialised and run in one slot, so the KV cache of the prefix
    they share (system prompt, instructions) is reused from one request to the next.

    ``last_timings`` holds llama.cpp's figures for the latest request (``cache_n``: prompt tokens
    reused from the cache, ``prompt_n``: tokens evaluated, ``predicted_per_second``, ...)."""

    def __init__(
        self,
        model_path: Path,
        *,
        context_window: int = 4096,
        threads: int = 2,
        name: str | None = None,
        verbose: bool = False,
    ) -> None:
        import xllamacpp as xl

        if not model_path.is_file():
            raise ModelUnavailable(f"GGUF model file not found: {model_path}")
        self.name = name or model_path.stem
        self.context_window = context_window
        self.model_path = model_path
        self.last_timings: dict[str, Any] = {}
        # The in-process server also listens on an ephemeral 127.0.0.1 port (it cannot be switched off);
        # a random key keeps other local users out. We use it only for /tokenize.
        self._http_key = secrets.token_urlsafe(24)

        p = xl.CommonParams()
        p.model.path = str(model_path)
        p.n_ctx = context_window
        p.n_parallel = _N_PARALLEL
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        p.cache_prompt = True
        p.cache_ram_mib = _PROMPT_CACHE_RAM_MIB
        p.verbosity = 3 if verbose else 0  # 0 silences llama.cpp's info/warning lines on stderr
        p.api_keys = [self._http_key]
        try:
            self._server = xl.Server(p)
        except Exception as exc:  # xllamacpp raises RuntimeError with no detail; name the file
            raise ModelUnavailable(f"llama.cpp could not load {model_path}: {exc}") from exc
        self._http = httpx.Client(
            base_url=self._server.listening_address,
            headers={"Authorization": f"Bearer {self._http_key}"},
            timeout=30.0,
            trust_env=False,  # a proxy from the environment must not intercept 127.0.0.1
        )

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]:
        request = build_request(messages, params)
        with _generation_lock:
            yield from self._generate(request)

    def count_tokens(self, text: str) -> int:
        """Exact count from the model's own tokenizer (llama.cpp's /tokenize; does not wait for generation)."""
        if not text:
            return 0
        try:
            response = self._http.post("/tokenize", json={"content": text, "add_special": False})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"llama.cpp tokenizer failed: {exc}") from exc
        return len(response.json()["tokens"])

    @property
    def local_endpoint(self) -> tuple[str, str]:
        """(base URL, API key) of the in-process server's own OpenAI-compatible HTTP API (127.0.0.1 only)."""
        return f"{self._server.listening_address}/v1", self._http_key

    def close(self) -> None:
        self._http.close()
        self.__dict__.pop("_server", None)

    def _generate(self, request: dict[str, Any]) -> Iterator[str]:
        chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        cancelled = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            chunks.put(chunk)
            return cancelled.is_set()

        def work() -> None:
            try:
                self._server.handle_chat_completions(request, on_chunk)
            except Exception as exc:
                chunks.put(exc)
            finally:
                chunks.put(_DONE)

        worker = threading.Thread(target=work, name="llamacpp-generate", daemon=True)
        worker.start()
        try:
            while (item := chunks.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise ModelUnavailable(f"llama.cpp generation failed: {item}") from item
                if "error" in item:
                    raise _error_from(item["error"])
                if "timings" in item:
                    self.last_timings = item["timings"]
                for choice in item.get("choices", ()):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
        finally:
            # Consumer stopped early (or we raised): the next chunk's callback tells llama.cpp to stop.
            cancelled.set()
            worker.join()


def build_request(messages: list[ChatMessage], params: GenerationParams) -> dict[str, Any]:
    request = openai_chat_body(messages, params)
    # llama.cpp server extras: reuse the KV cache of a shared prompt prefix; its sampler names.
    request.update(cache_prompt=True, top_k=params.top_k, repeat_penalty=params.repetition_penalty)
    return request


def _error_from(error: Any) -> Exception:
    if not isinstance(error, dict):
        return ModelUnavailable(f"llama.cpp error: {error}")
    message = str(error.get("message", error))
    if error.get("type") == "exceed_context_size_error":
        return InvalidInput(f"prompt too long for the model: {message}")
    if int(error.get("code", 500)) < 500:
        return InvalidInput(f"llama.cpp rejected the request: {message}")
    return ModelUnavailable(f"llama.cpp error: {message}")


_instances: dict[tuple[str, int, int], LlamaCppChatModel] = {}
_instances_lock = threading.Lock()


def shared_llamacpp_model(
    locate: Callable[[], Path], *, key: str, context_window: int, threads: int, name: str | None = None
) -> LlamaCppChatModel:
    """One instance per (model, context, threads) per process; ``locate`` runs only when none exists yet.

    A second copy would double memory, and two copies generating at once oversubscribe the cores
    (llama.cpp collapses then); ``_generation_lock`` serialises generation across instances too.
    """
    with _instances_lock:
        model = _instances.get((key, context_window, threads))
        if model is None:
            model = LlamaCppChatModel(locate(), context_window=context_window, threads=threads, name=name)
            _instances[(key, context_window, threads)] = model
        return model

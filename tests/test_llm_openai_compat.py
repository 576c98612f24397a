"""The OpenAI-compatible HTTP backend against real HTTP servers on localhost: a small scripted one
(standard library) for the protocol and error paths, and llama.cpp's own server for the real thing."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rag.config import LLMSettings, load_settings
from rag.errors import InvalidInput, ModelUnavailable
from rag.llm import ChatMessage, GenerationParams, create_chat_model
from rag.llm.llamacpp import LlamaCppChatModel
from rag.llm.openai_compat import OpenAICompatChatModel

MODEL_HOME = Path(os.environ.get("RAG_TEST_MODEL_HOME", Path.home() / ".cache" / "rag-assistant-tests"))

MESSAGES: list[ChatMessage] = [{"role": "user", "content": "Say hello"}]


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.reply: str = "stream"  # stream | http500 | http400 | error_chunk

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        reply = self.server.reply
        if reply.startswith("http"):
            status = int(reply[4:])
            payload = json.dumps({"error": {"message": f"scripted failure {status}"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        events += [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in ("Hel", "lo", " 世界")]
        if reply == "error_chunk":
            events.append({"error": {"message": "model crashed"}})
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.wfile.write(b": keep-alive comment\n\n")
        for event in events:
            self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_streams_deltas_and_sends_the_request(server: ScriptedServer) -> None:
    model = OpenAICompatChatModel(server.base_url, "my-model", api_key="sk-test")
    params = GenerationParams(temperature=0.2, top_p=0.8, top_k=20, max_tokens=32, stop=["\n\n"], seed=7)
    assert list(model.stream(MESSAGES, params)) == ["Hel", "lo", " 世界"]
    request = server.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "my-model" and body["stream"] is True and body["messages"] == MESSAGES
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (32, 0.2, 0.8, 20)
    assert body["stop"] == ["\n\n"] and body["seed"] == 7 and body["repeat_penalty"] == 1.05


def test_factory_reads_the_api_key_from_the_environment(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAG_LLM__BACKEND", "openai")
    monkeypatch.setenv("RAG_LLM__BASE_URL", server.base_url)
    monkeypatch.setenv("RAG_LLM__MODEL", "remote-model")
    monkeypatch.setenv("RAG_LLM__API_KEY", "sk-from-env")
    settings = load_settings()
    model = create_chat_model(settings.llm, tmp_path)
    assert isinstance(model, OpenAICompatChatModel)
    assert "".join(model.stream(MESSAGES, GenerationParams())) == "Hello 世界"
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer sk-from-env"
    assert "sk-from-env" not in repr(settings)


def test_server_error_is_model_unavailable_naming_the_url(server: ScriptedServer) -> None:
    server.reply = "http500"
    model = OpenAICompatChatModel(server.base_url, "m")
    with pytest.raises(ModelUnavailable, match=r"127\.0\.0\.1:\d+/v1/chat/completions.*500.*scripted failure"):
        list(model.stream(MESSAGES, GenerationParams()))


def test_rejected_request_is_invalid_input(server: ScriptedServer) -> None:
    server.reply = "http400"
    with pytest.raises(InvalidInput, match="scripted failure 400"):
        list(OpenAICompatChatModel(server.base_url, "m").stream(MESSAGES, GenerationParams()))


def test_error_event_in_the_stream_is_reported(server: ScriptedServer) -> None:
    server.reply = "error_chunk"
    with pytest.raises(ModelUnavailable, match="model crashed"):
        list(OpenAICompatChatModel(server.base_url, "m").stream(MESSAGES, GenerationParams()))


def test_unreachable_server_is_model_unavailable_naming_the_url() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = OpenAICompatChatModel(f"http://127.0.0.1:{port}/v1", "m")
    with pytest.raises(ModelUnavailable, match=rf"http://127\.0\.0\.1:{port}/v1/chat/completions is unreachable"):
        list(model.stream(MESSAGES, GenerationParams()))


def test_count_tokens_estimate_is_close_for_english_and_chinese() -> None:
    model = OpenAICompatChatModel("http://127.0.0.1:9/v1", "m")
    assert model.count_tokens("") == 0
    assert 8 <= model.count_tokens("The quick brown fox jumps over the lazy dog.") <= 16  # 10 real tokens
    assert model.count_tokens("成都是四川省的省会") == 9


@pytest.mark.slow
def test_against_llama_cpp_http_server() -> None:
    """xllamacpp's in-process server also speaks the OpenAI HTTP API: a real server for our client."""
    local = create_chat_model(LLMSettings(), MODEL_HOME)
    assert isinstance(local, LlamaCppChatModel)
    base_url, key = local.local_endpoint
    remote = OpenAICompatChatModel(base_url, "bundled", api_key=key)
    params = GenerationParams(temperature=0.0, max_tokens=16, repetition_penalty=1.0)
    pieces = list(remote.stream([{"role": "user", "content": "What is the capital of France? Answer in one word."}], params))
    assert "Paris" in "".join(pieces)
    with pytest.raises(ModelUnavailable, match="401"):
        list(OpenAICompatChatModel(base_url, "bundled", api_key="wrong").stream(MESSAGES, params))

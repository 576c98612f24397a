"""The default backend on the real bundled model (Qwen2.5-Coder-0.5B-Instruct GGUF via xllamacpp)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from rag.config import LLMSettings
from rag.errors import InvalidInput
from rag.llm import ChatMessage, GenerationParams, create_chat_model
from rag.llm.llamacpp import LlamaCppChatModel
from rag.prompts import render

pytestmark = pytest.mark.slow

# The assembled GGUF (490 MB) is kept across sessions, like a model hub cache.
MODEL_HOME = Path(os.environ.get("RAG_TEST_MODEL_HOME", Path.home() / ".cache" / "rag-assistant-tests"))
GREEDY = GenerationParams(temperature=0.0, max_tokens=16, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def model() -> LlamaCppChatModel:
    chat_model = create_chat_model(LLMSettings(), MODEL_HOME)
    assert isinstance(chat_model, LlamaCppChatModel)
    return chat_model


def ask(model: LlamaCppChatModel, question: str, params: GenerationParams = GREEDY) -> str:
    return "".join(model.stream([{"role": "user", "content": question}], params))


def test_answers_a_trivial_question(model: LlamaCppChatModel) -> None:
    assert "Paris" in ask(model, "What is the capital of France? Answer in one word.")


def test_answers_in_chinese(model: LlamaCppChatModel) -> None:
    assert "巴黎" in ask(model, "法国的首都是哪座城市？只回答城市名。")


def test_streams_pieces_while_generating(model: LlamaCppChatModel) -> None:
    arrivals = []
    for piece in model.stream([{"role": "user", "content": "Count from 1 to 10, separated by commas."}], GREEDY):
        arrivals.append((time.perf_counter(), piece))
    assert len(arrivals) >= 5
    assert "1, 2, 3" in "".join(piece for _, piece in arrivals)
    # Pieces come one per decoded token (~20-30 ms apart), not in one burst at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.05


def test_closing_the_stream_early_cancels_generation(model: LlamaCppChatModel) -> None:
    params = GenerationParams(temperature=0.0, max_tokens=300, repetition_penalty=1.0)
    stream = model.stream([{"role": "user", "content": "Count from 1 to 200, separated by commas."}], params)
    first = [next(stream) for _ in range(3)]
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 2.0  # not the ~8 s the remaining 297 tokens would take
    assert first[0] == "1"
    assert "Paris" in ask(model, "What is the capital of France? Answer in one word.")


def test_shared_system_prompt_is_served_from_the_kv_cache(model: LlamaCppChatModel) -> None:
    system = render("system", "en")
    for question in ("What is BM25?", "What is a vector index?"):
        messages: list[ChatMessage] = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        "".join(model.stream(messages, GenerationParams(temperature=0.0, max_tokens=4)))
    assert model.last_timings["cache_n"] >= model.count_tokens(system)


def test_count_tokens_uses_the_model_tokenizer(model: LlamaCppChatModel) -> None:
    assert model.count_tokens("") == 0
    assert model.count_tokens("hello world") == 2
    assert model.count_tokens("你好，世界") == 3


def test_prompt_longer_than_the_context_is_invalid_input(model: LlamaCppChatModel) -> None:
    with pytest.raises(InvalidInput, match="context"):
        ask(model, "hello " * (model.context_window + 100))


def test_concurrent_requests_are_serialised(model: LlamaCppChatModel) -> None:
    answers: dict[str, str] = {}

    def worker(key: str, question: str) -> None:
        answers[key] = ask(model, question)

    threads = [
        threading.Thread(target=worker, args=("fr", "What is the capital of France? Answer in one word.")),
        threading.Thread(target=worker, args=("jp", "What is the capital of Japan? Answer in one word.")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert "Paris" in answers["fr"] and "Tokyo" in answers["jp"]


def test_factory_shares_one_instance_per_process(model: LlamaCppChatModel, tmp_path: Path) -> None:
    assert create_chat_model(LLMSettings(), MODEL_HOME) is model
    # Another RAG_HOME does not load (or assemble) a second copy of the bundled model.
    assert create_chat_model(LLMSettings(), tmp_path) is model
    assert not (tmp_path / "models").exists()
    assert model.name == "qwen2.5-coder-0.5b-instruct"

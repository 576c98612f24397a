"""The transformers backend on the bundled GGUF, and its sampling / streaming helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rag.config import LLMSettings
from rag.llm import ChatMessage, GenerationParams, create_chat_model
from rag.llm.transformers_backend import TransformersChatModel, _stop_at, pick_token

# The dequantised checkpoint is converted once (~40 s) and kept across sessions, like a model hub cache.
MODEL_HOME = Path(os.environ.get("RAG_TEST_MODEL_HOME", Path.home() / ".cache" / "rag-assistant-tests"))
FRANCE: list[ChatMessage] = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def model() -> TransformersChatModel:
    chat_model = create_chat_model(LLMSettings(backend="transformers"), MODEL_HOME)
    assert isinstance(chat_model, TransformersChatModel)
    return chat_model


def reference_greedy(model: TransformersChatModel, messages: list[ChatMessage], params: GenerationParams) -> str:
    input_ids = model.encode_chat(messages)
    output = model.model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=params.max_tokens,
        do_sample=False,
        repetition_penalty=params.repetition_penalty,
    )
    return model.tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)


@pytest.mark.slow
def test_greedy_stream_equals_generate(model: TransformersChatModel) -> None:
    params = GenerationParams(temperature=0.0, max_tokens=8, repetition_penalty=1.0)
    pieces = list(model.stream(FRANCE, params))
    assert "Paris" in "".join(pieces)
    assert "".join(pieces) == reference_greedy(model, FRANCE, params)

    chinese: list[ChatMessage] = [{"role": "user", "content": "用一句话介绍成都。"}]
    params = GenerationParams(temperature=0.0, max_tokens=8, repetition_penalty=1.05)
    pieces = list(model.stream(chinese, params))
    assert len(pieces) >= 3
    assert "".join(pieces) == reference_greedy(model, chinese, params)


@pytest.mark.slow
def test_sampling_is_reproducible_with_a_seed(model: TransformersChatModel) -> None:
    params = GenerationParams(temperature=0.8, top_p=0.9, top_k=40, max_tokens=6, seed=1234)
    assert "".join(model.stream(FRANCE, params)) == "".join(model.stream(FRANCE, params))


@pytest.mark.slow
def test_count_tokens_and_context(model: TransformersChatModel) -> None:
    assert model.count_tokens("你好，世界") == 3
    assert model.context_window == 4096
    assert model.name == "qwen2.5-coder-0.5b-instruct"


def test_pick_token_greedy_and_truncation() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, -1.0])
    seen = torch.tensor([1])
    greedy = GenerationParams(temperature=0.0, repetition_penalty=1.0)
    assert pick_token(logits, seen, greedy, None) == 1
    # The penalty divides the positive logit of a seen token: 3.0 / 2 < 2.0.
    assert pick_token(logits, seen, GenerationParams(temperature=0.0, repetition_penalty=2.0), None) == 2
    generator = torch.Generator().manual_seed(0)
    only_best = GenerationParams(temperature=1.0, top_k=1, repetition_penalty=1.0)
    assert {pick_token(logits, seen, only_best, generator) for _ in range(20)} == {1}
    nucleus = GenerationParams(temperature=1.0, top_k=0, top_p=0.01, repetition_penalty=1.0)
    assert {pick_token(logits, seen, nucleus, generator) for _ in range(20)} == {1}


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        (["Hello", " wor", "ld"], [], ["Hello", " wor", "ld"]),
        (["Answer: 4", "2\n\nQuest", "ion: next"], ["\n\nQuestion"], "Answer: 42"),
        (["a", "b", "STO", "P", "c"], ["STOP"], "ab"),
        (["a", "ST", "x"], ["STOP"], "aSTx"),
        (["STOP"], ["STOP"], ""),
    ],
)
def test_stop_strings(pieces: list[str], stops: list[str], expected: list[str] | str) -> None:
    out = list(_stop_at(iter(pieces), stops))
    if isinstance(expected, list):
        assert out == expected
    else:
        assert "".join(out) == expected

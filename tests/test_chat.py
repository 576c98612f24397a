"""Grounded answers with the real bundled LLM on a real KB: citations, declines, follow-ups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.chat import ChatOptions, answer_question, prepare
from rag.llm.base import GenerationParams

pytestmark = pytest.mark.slow
MODEL_WORDING = pytest.mark.xfail(strict=False, reason=(
    "the bundled 0.5B model's wording changes with llama.cpp's prompt-cache state (seen in the full suite, not alone): "
    "an answer naming places or figures not in its source is dropped by the support check and declined; issue 13 stays open"))
# Measured alone (2026-12-02): the model answers "杭州有很多好玩的，比如西湖、杭州城、杭州博物馆、杭州美食等。[1]", naming
# places its source does not; the support check drops that sentence and no quoted fallback comes for this open
# question, so it is declined. (The other two MODEL_WORDING cases passed alone that day.)
OPEN_QUESTION = pytest.mark.xfail(strict=False, reason=(
    "the model names places not in its source (杭州城, 杭州博物馆); the support check drops the sentence and no "
    "quoted fallback comes for this open question, so it is declined; issue 13 stays open"))
SHORT = ChatOptions(params=GenerationParams(temperature=0.0, max_tokens=48, repetition_penalty=1.0))


def test_english_question_is_answered_with_its_citation(sample_kb) -> None:  # type: ignore[no-untyped-def]
    service, kb, _ = sample_kb
    answer = answer_question(service, kb, [{"role": "user", "content": "How many days of paid vacation do employees get per year?"}], SHORT)
    assert answer.grounded
    assert "25" in answer.answer
    assert "handbook/vacation.txt" in {c.source for c in answer.citations}


@MODEL_WORDING
def test_chinese_question_is_answered_with_its_citation(sample_kb) -> None:  # type: ignore[no-untyped-def]
    service, kb, _ = sample_kb
    answer = answer_question(service, kb, [{"role": "user", "content": "博舍酒店的双人间每晚多少钱？"}], SHORT)
    assert answer.grounded
    assert "1800" in answer.answer or "一千八百" in answer.answer
    assert "travel/成都美食.txt" in {c.source for c in answer.citations}


def test_answer_ends_with_verbatim_evidence_from_its_sources(sample_kb) -> None:  # type: ignore[no-untyped-def]
    service, kb, _ = sample_kb
    question = [{"role": "user", "content": "博舍酒店的双人间每晚多少钱？"}]
    answer = answer_question(service, kb, question, SHORT)
    sources = {c.n: c.text for c in answer.citations}
    if answer.fallback:  # the model's text was not backed: the answer is the quoted source sentences
        assert answer.answer.startswith("资料原文：「")
    else:
        assert answer.evidence and not answer.answer.startswith("原文")
    for quote in answer.evidence:
        assert f"「{quote['text']}」[{quote['n']}]" in answer.answer
        assert quote["text"] in sources[quote["n"]]  # verbatim, from the source it is numbered with
    plain = answer_question(service, kb, question, ChatOptions(params=SHORT.params, evidence_quotes=0))
    assert plain.evidence == []
    if plain.fallback:  # no model text to follow with quotes: the answer is the quote itself
        assert plain.answer.startswith("资料原文：「")
    else:
        assert "原文：「" not in plain.answer


def test_off_topic_question_is_declined(sample_kb) -> None:  # type: ignore[no-untyped-def]
    service, kb, _ = sample_kb
    answer = answer_question(service, kb, [{"role": "user", "content": "What is the boiling point of mercury?"}], SHORT)
    assert answer.grounded is False
    assert answer.citations == []


def test_follow_up_is_condensed_before_retrieval(sample_kb) -> None:  # type: ignore[no-untyped-def]
    service, kb, _ = sample_kb
    history = [
        {"role": "user", "content": "Which hot pot restaurant in Chengdu is the best?"},
        {"role": "assistant", "content": "Shu Jiu Xiang on Yulin Road. [1]"},
        {"role": "user", "content": "what about hotels?"},
    ]
    prepared = prepare(service, kb, history, SHORT)  # type: ignore[arg-type]
    assert "hotel" in prepared.search_query.lower()
    assert any("Temple House" in hit.text for hit in prepared.sources), prepared.search_query


def test_a_follow_up_about_the_previous_answer_is_answered_from_its_source(sample_kb) -> None:  # type: ignore[no-untyped-def]
    # Was declined with no sources: the model said "Until March 31 of the following year. [1]" and the support
    # check took the follow-up's "ones" for a subject word its source never holds (tests/test_answer_check.py).
    service, kb, _ = sample_kb
    question = "How many days of paid vacation does a full-time employee get?"
    first = answer_question(service, kb, [{"role": "user", "content": question}], SHORT)
    assert first.grounded and "25" in first.answer
    follow_up = answer_question(service, kb, [
        {"role": "user", "content": question},
        {"role": "assistant", "content": first.answer},
        {"role": "user", "content": "Until when can the unused ones be carried over?"},
    ], SHORT)
    assert follow_up.grounded, (follow_up.search_query, follow_up.generated, follow_up.answer)
    assert "handbook/vacation.txt" in {c.source for c in follow_up.citations}
    assert "March 31" in follow_up.answer, follow_up.answer


def test_rag_ask_json(sample_kb) -> None:  # type: ignore[no-untyped-def]
    service, kb, _ = sample_kb
    env = {**os.environ, "RAG_HOME": str(service.settings.home), "RAG_LLM__MAX_TOKENS": "48"}
    rag = str(Path(sys.executable).with_name("rag"))
    result = subprocess.run([rag, "ask", "--kb", kb, "How much does a double room at The Temple House cost?", "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"answer", "grounded", "citations"}
    assert answer["grounded"] and "1,800" in answer["answer"].replace("1800", "1,800")
    assert {"n", "doc_id", "source", "page", "text"} <= set(answer["citations"][0])


@pytest.fixture(scope="module")
def demo_kb(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The demo KB `make run` builds: samples/."""
    from rag.config import load_settings
    from rag.service import RagService

    service = RagService(load_settings(home=tmp_path_factory.mktemp("demo-home")))
    service.create_kb("demo", "the demo KB")
    service.ingest("demo", [Path(__file__).resolve().parents[1] / "samples"])
    yield service
    service.catalog.close()


@pytest.mark.parametrize(("question", "expected"), [
    ("For how many hours can the kettle keep water warm?", ["4 hours", "four hours"]),
    pytest.param("Does the kettle have a warranty?", ["two-year", "two year", "2-year"], marks=MODEL_WORDING),
    pytest.param("杭州有什么好玩的？", ["西湖", "龙井", "雷峰塔"], marks=OPEN_QUESTION),
    ("How do I start pairing?", ["three seconds", "3 seconds"]),
])
def test_readme_questions_on_the_demo_kb(demo_kb, question: str, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    answer = answer_question(demo_kb, "demo", [{"role": "user", "content": question}], SHORT)
    assert answer.grounded, answer.answer
    assert any(e in answer.answer for e in expected), answer.answer
    assert not answer.answer.startswith(("No.", "No,")), answer.answer


def test_the_worked_example_never_surfaces_in_an_answer(demo_kb) -> None:  # type: ignore[no-untyped-def]
    # Once answered "In 1889. [1]": the year of the system prompt's worked example.
    answer = answer_question(demo_kb, "demo", [{"role": "user", "content": "How long is the kettle's warranty?"}], SHORT)
    assert "1889" not in answer.answer and "Eiffel" not in answer.answer
    # The model's second look ("The warranty is two years. [1]") or the quoted sentence ("two-year warranty").
    assert "two-year" in answer.answer or "two years" in answer.answer, answer.answer

"""The QA set (benchmarks/data/qa) and its scoring: gold answers in gold documents, per-category figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import InvalidInput
from rag.qa import QAQuestion, QAResult, answer_claim, is_correct, load_questions, summarise

ROOT = Path(__file__).resolve().parents[1]
QA = ROOT / "benchmarks" / "data" / "qa"


def _document(source: str) -> str:
    for folder in (ROOT / "samples", QA / "docs"):
        if (folder / source).exists():
            return (folder / source).read_text(encoding="utf-8")
    raise AssertionError(f"gold document {source} is in neither samples/ nor {QA / 'docs'}")


def test_the_question_set_covers_what_the_issue_asks() -> None:
    questions = load_questions(QA / "questions.jsonl")
    categories = [q.category for q in questions]
    assert len(questions) >= 60 and categories.count("none") >= 10
    assert {"en", "zh", "zh-en", "en-zh"} <= set(categories)
    assert any(q.yes_no for q in questions) and sum(q.kind == "number" for q in questions) >= 20
    assert len({q.id for q in questions}) == len(questions)


def test_every_gold_answer_is_in_its_gold_document() -> None:
    for q in load_questions(QA / "questions.jsonl"):
        if not q.answerable:
            assert q.doc is None and not q.answers
            continue
        text = " ".join(_document(str(q.doc)).lower().split())
        # Across languages a gold answer may be given in either language; one of them is the document's.
        assert any(a.lower() in text for a in q.answers), (q.id, q.answers)


def test_answers_are_scored_by_gold_string_or_by_the_yes_no_word() -> None:
    warranty = QAQuestion("a", "Does the kettle have a warranty?", "en", "yesno", ("two-year",), "k.md", "yes")
    assert is_correct("Yes. [1]", warranty) and is_correct("The documents say: “… a two-year warranty …”", warranty)
    assert not is_correct("No. [1]", warranty)
    hotel = QAQuestion("b", "在上海出差，住宿费每晚最多报销多少？", "zh", "number", ("800元",), "e.md")
    assert is_correct("每晚最高报销800元。[1]", hotel) and not is_correct("每晚最高报销500元。[1]", hotel)
    # Number words and digits are one: "3 to five working days" holds "three to five working days".
    delivery = QAQuestion("c", "标准配送需要几天？", "zh-en", "number", ("three to five working days",), "f.md")
    assert is_correct("3 to five working days. [1]", delivery) and not is_correct("three working days. [1]", delivery)


def test_summary_counts_false_declines_and_false_answers() -> None:
    answerable = QAQuestion("a", "q?", "en", "fact", ("x",), "d.md")
    unanswerable = QAQuestion("b", "q?", "none", "fact", (), None)
    results = [
        QAResult(answerable, True, True, model_text="x [1]", answer="x [1]"),
        QAResult(answerable, True, True, model_text="The documents do not cover this.", answer="…", declined=True,
                 model_declined=True),
        QAResult(unanswerable, False, False, declined=True),
        QAResult(unanswerable, False, True, answer="y", model_text="y"),
    ]
    summary = summarise(results)
    assert summary["false_declines"] == 0.5 and summary["false_answers"] == 0.5
    assert summary["categories"]["en"]["model_accuracy"] == 0.5 and summary["unanswerable_declined"] == 0.5


def test_a_broken_question_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Where?", "answers": ["here"]}\nnot json\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match="line 2"):
        load_questions(path)
    path.write_text('{"question": "哪里？", "answer": "这里"}\n{"question": "Who?"}\n', encoding="utf-8")
    first, second = load_questions(path)
    assert (first.category, first.answers, second.category) == ("zh", ("这里",), "none")
    with pytest.raises(InvalidInput, match="cannot read"):
        load_questions(tmp_path / "missing.jsonl")


def test_the_evidence_quotes_under_a_wrong_answer_do_not_make_it_right() -> None:
    question = QAQuestion("x", "How long is the kettle's warranty?", "en", "number", ("two-year",),
                          "handbook/aurora-kettle-handbook.md")
    quoted = 'The warranty lasts one year. [1]\n\nSource text: "The AK-200 has a two-year warranty from the date of purchase." [1]'
    assert answer_claim(quoted) == "The warranty lasts one year. [1]"
    wrong = QAResult(question, True, True, "The warranty lasts one year. [1]", quoted)
    assert not wrong.correct and wrong.correct_with_quotes
    # The quoted fallback is the answer itself, and counts.
    fallback = QAResult(question, True, True, "No. [1]", "The documents say: “The AK-200 has a two-year warranty.” [1]",
                        fallback=True)
    assert fallback.correct
    summary = summarise([wrong, fallback])
    assert summary["same_language_answer_accuracy"] == 0.5 and summary["same_language_answer_or_quote_accuracy"] == 1.0

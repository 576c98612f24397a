"""A question set with gold answers and gold documents: per-category accuracy, false declines, false answers.

One JSON object a line (benchmarks/data/qa/questions.jsonl):
``{"id", "question", "category", "kind", "answers": [...], "doc": SOURCE | null, "yes_no"?: "yes"|"no"}``.
``category``: ``en`` / ``zh`` (question and gold document in one language), ``zh-en`` / ``en-zh`` (a
question in the first language over a document in the second), ``none`` (the documents do not answer
it: the right reply is a decline). An answer is right when it holds a gold answer string (NFKC, lower
case, punctuation and spaces removed), or, for a yes/no question, when it opens with the right word.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.answer_check import EN_NUMBER_WORDS
from rag.errors import InvalidInput
from rag.evaluate import normalise_answer
from rag.prompts import detect_language

if TYPE_CHECKING:
    from rag.service import RagService

CATEGORIES = ("en", "zh", "zh-en", "en-zh", "none")
_YES = re.compile(r"^\W*(yes|是的|是|对|可以|有)", re.IGNORECASE)
_NO = re.compile(r"^\W*(no\b|不|没有|否)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class QAQuestion:
    id: str
    question: str
    category: str
    kind: str
    answers: tuple[str, ...]
    doc: str | None
    yes_no: str | None = None

    @property
    def answerable(self) -> bool:
        return self.category != "none"

    @property
    def cross_language(self) -> bool:
        return self.category in {"zh-en", "en-zh"}


@dataclass(slots=True)
class QAResult:
    question: QAQuestion
    right_doc_first: bool
    passed_gate: bool  # some retrieved chunk passed the relevance gate
    model_text: str = ""
    answer: str = ""
    declined: bool = False  # the delivered answer says the documents do not cover it
    model_declined: bool = False
    fallback: bool = False
    supported: float | None = None
    seconds: float = 0.0
    features: dict[str, Any] = field(default_factory=dict)
    first_draft: str = ""  # the model's first text when a second look replaced it (rag/chat.py)

    @property
    def model_correct(self) -> bool:
        return is_correct(self.model_text, self.question) and not self.model_declined

    @property
    def correct(self) -> bool:
        """The delivered answer's own words hold the gold answer: the model's checked sentences, or the quoted
        fallback. The evidence quotes printed under the model's words do not count: a wrong model sentence
        above a quote that holds the right figure leaves the reader with two answers, and is wrong."""
        if not self.question.answerable:
            return self.declined
        return not self.declined and is_correct(answer_claim(self.answer), self.question)

    @property
    def correct_with_quotes(self) -> bool:
        """The lenient reading (the evidence quotes count too), printed beside the strict one for comparison."""
        if not self.question.answerable:
            return self.declined
        return not self.declined and is_correct(self.answer, self.question)


_EVIDENCE_LINE = re.compile(r'^(?:Source text: "|原文：「)')


def answer_claim(answer: str) -> str:
    """The answer without the evidence quotes appended under it (prompts' ``evidence`` lines after a blank line)."""
    head, _, tail = answer.rpartition("\n\n")
    if head and tail.strip() and all(_EVIDENCE_LINE.match(line) for line in tail.strip().splitlines()):
        return head
    return answer


def load_questions(path: Path) -> list[QAQuestion]:
    questions = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInput(f"cannot read question file {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            answers = record.get("answers") or ([record["answer"]] if record.get("answer") else [])
            text = str(record["question"])
            category = record.get("category") or (detect_language(text) if answers else "none")
            question = QAQuestion(str(record.get("id", number)), text, str(category), str(record.get("kind", "fact")),
                                  tuple(str(a) for a in answers), record.get("doc"), record.get("yes_no"))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{path}, line {number}: not a question record ({exc})") from exc
        if question.category not in CATEGORIES:
            raise InvalidInput(f"{path}, line {number}: category must be one of {', '.join(CATEGORIES)}")
        questions.append(question)
    if not questions:
        raise InvalidInput(f"{path} holds no questions")
    return questions


def is_correct(text: str, question: QAQuestion) -> bool:
    if question.yes_no:
        opener = _YES if question.yes_no == "yes" else _NO
        other = _NO if question.yes_no == "yes" else _YES
        body = re.sub(r"^\W+", "", text)
        if opener.match(body) and not other.match(body):
            return True
    normalised = normalise_answer(digits_for_number_words(text))
    golds = [normalise_answer(digits_for_number_words(gold)) for gold in question.answers]
    return any(gold and gold in normalised for gold in golds)


_CARDINALS = {word: value for word, value in EN_NUMBER_WORDS.items() if word not in {"half", "once", "twice"}}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(sorted(_CARDINALS, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def digits_for_number_words(text: str) -> str:
    """English number words as digits, so that "3 to five working days" holds the gold "three to five working days"."""
    return _NUMBER_WORD.sub(lambda m: str(_CARDINALS[m.group(1).lower()]), text)


def same_source(source: str, gold: str | None) -> bool:
    return bool(gold) and (source == gold or source.endswith("/" + str(gold)))


def summarise(results: Sequence[QAResult]) -> dict[str, Any]:
    """Per-category accuracy of the model's text and of the delivered answer; false declines and answers."""
    per_category: dict[str, Any] = {}
    for category in CATEGORIES:
        group = [r for r in results if r.question.category == category]
        if not group:
            continue
        row: dict[str, Any] = {"questions": len(group),
                               "model_accuracy": _share(r.model_correct for r in group),
                               "answer_accuracy": _share(r.correct for r in group),
                               "answer_or_quote_accuracy": _share(r.correct_with_quotes for r in group),
                               "declined": _share(r.declined for r in group)}
        if category != "none":
            row["right_doc_first"] = _share(r.right_doc_first for r in group)
        per_category[category] = row
    answerable = [r for r in results if r.question.answerable]
    unanswerable = [r for r in results if not r.question.answerable]
    same = [r for r in answerable if not r.question.cross_language]
    cross = [r for r in answerable if r.question.cross_language]
    supported = [r.supported for r in results if r.supported is not None]
    summary: dict[str, Any] = {
        "questions": len(results),
        "categories": per_category,
        "same_language_model_accuracy": _share(r.model_correct for r in same),
        "same_language_answer_accuracy": _share(r.correct for r in same),
        "same_language_answer_or_quote_accuracy": _share(r.correct_with_quotes for r in same),
        "cross_language_model_accuracy": _share(r.model_correct for r in cross),
        "cross_language_answer_accuracy": _share(r.correct for r in cross),
        "cross_language_answer_or_quote_accuracy": _share(r.correct_with_quotes for r in cross),
        "cross_language_right_doc_first": _share(r.right_doc_first for r in cross),
        "false_declines": _share(r.declined for r in answerable),
        "false_answers": _share(not r.declined for r in unanswerable),
        "unanswerable_declined": _share(r.declined for r in unanswerable),
        "wrong_answers": _share(not r.declined and not r.correct for r in answerable),
        "fallbacks": sum(r.fallback for r in results),
        "second_looks": sum(bool(r.first_draft) for r in results),
        "answer_supported": round(sum(supported) / len(supported), 4) if supported else None,
    }
    return summary


def _share(values: Iterable[bool]) -> float | None:
    items = list(values)
    return round(sum(items) / len(items), 4) if items else None


def evaluate_questions(service: RagService, kb: str, path: Path, limit: int | None = None) -> dict[str, Any]:
    """`rag eval --questions FILE --kb NAME`: ask each question of the KB and score the answers."""
    service.get_kb(kb)
    questions = load_questions(path)[:limit] if limit else load_questions(path)
    summary = summarise(run_questions(service, kb, questions))
    return {"kb": kb, "questions_file": str(path), **summary}


def build_kb(service: RagService, kb: str, folders: Sequence[Path]) -> None:
    if not service.catalog.kb_exists(kb):
        service.create_kb(kb, "question-set documents")
    service.ingest(kb, list(folders))


def run_questions(service: RagService, kb: str, questions: Sequence[QAQuestion], generate: bool = True,
                  options: Any = None) -> list[QAResult]:
    """Retrieve (and answer) each question the way `rag ask` does."""
    import time

    from rag.answer_check import DECLINE_PATTERNS
    from rag.chat import ChatOptions, answer_question, relevance

    results = []
    top_k = service.settings.retrieval.chat_top_k
    for question in questions:
        hits = service.search(kb, question.question, top_k=top_k)
        verdicts = relevance(service, kb, question.question, hits)
        result = QAResult(question, bool(hits) and same_source(hits[0].source, question.doc),
                          any(v.passes for v in verdicts),
                          features={"hits": [{"source": h.source, **asdict(v)} for h, v in zip(hits, verdicts, strict=True)]})
        if generate:
            started = time.perf_counter()
            answer = answer_question(service, kb, [{"role": "user", "content": question.question}],
                                     options or ChatOptions())
            result.seconds = round(time.perf_counter() - started, 2)
            result.model_text, result.answer = answer.generated, answer.answer
            result.model_declined = bool(DECLINE_PATTERNS.search(answer.generated))
            result.declined = not answer.grounded
            result.fallback, result.supported = answer.fallback, answer.supported
            result.first_draft = answer.first_draft
        else:
            result.declined = not result.passed_gate
        results.append(result)
    return results


@dataclass(frozen=True, slots=True)
class GateChoice:
    bm25_share: float
    similarity: dict[str, float]
    false_declines: float
    false_answers: float


def calibrate_gate(results: Sequence[QAResult]) -> GateChoice:
    """Thresholds (BM25 share; cosine per embedding model) that best separate answerable from unanswerable.

    Minimises 2 × false declines + false answers of the gate alone over ``results`` (a false decline
    is final; a question let through still meets the model's decline and the support check); among
    equally good choices the median of each threshold, so that they sit between the two groups.
    """
    models = sorted({space.rpartition("@")[0] or space for r in results for h in r.features.get("hits", [])
                     for space in h["similarity"]})
    shares = [round(0.2 + 0.05 * i, 2) for i in range(15)]
    cosines = [round(0.15 + 0.025 * i, 3) for i in range(21)]
    best: list[tuple[float, float, dict[str, float], float, float]] = []
    for share in shares:
        for combo in itertools.product(cosines, repeat=len(models)):
            thresholds = dict(zip(models, combo, strict=True))
            fd, fa = gate_rates(results, share, thresholds)
            best.append((2 * fd + fa, share, thresholds, fd, fa))
    lowest = min(item[0] for item in best)
    optimal = [item for item in best if item[0] == lowest]
    # Of equally good choices the median on each axis (within the optimal set): away from both edges.
    share = sorted(item[1] for item in optimal)[len(optimal) // 2]
    thresholds = {m: sorted(item[2][m] for item in optimal)[len(optimal) // 2] for m in models}
    fd, fa = gate_rates(results, share, thresholds)
    return GateChoice(share, thresholds, fd, fa)


def gate_rates(results: Sequence[QAResult], share: float, thresholds: dict[str, float]) -> tuple[float, float]:
    """(false declines among answerable, false passes among unanswerable) of the gate alone."""

    def passes(result: QAResult) -> bool:
        for hit in result.features.get("hits", []):
            if hit["bm25_share"] >= share:
                return True
            for space, cosine in hit["similarity"].items():
                model = space.rpartition("@")[0] or space
                if cosine >= thresholds.get(model, 1.0):
                    return True
        return False

    answerable = [r for r in results if r.question.answerable]
    unanswerable = [r for r in results if not r.question.answerable]
    fd = sum(not passes(r) for r in answerable) / max(len(answerable), 1)
    fa = sum(passes(r) for r in unanswerable) / max(len(unanswerable), 1)
    return round(fd, 4), round(fa, 4)

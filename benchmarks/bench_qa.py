"""Answers people can trust, measured on our own question set (benchmarks/data/qa).

    .venv/bin/python benchmarks/bench_qa.py                      # retrieve and answer all 65 questions
    .venv/bin/python benchmarks/bench_qa.py --retrieval-only --calibrate   # the gate alone, and its thresholds
    .venv/bin/python benchmarks/bench_qa.py --json --ids q01,q36

The KB holds samples/ (the demo KB) and benchmarks/data/qa/docs (a purifier manual in English, an
expense policy and a robot-vacuum manual in Chinese), built in a temporary RAG_HOME unless --home is
given. Printed: per category, the accuracy of the model's own text and of the delivered answer (after
the support check and the quoted fallback; the evidence quotes under the model's words do not count,
``*_answer_or_quote_accuracy`` is the reading where they do), right document first, declines; and
false declines (answerable questions declined), false answers (unanswerable questions answered).
--calibrate fits the relevance gate on the odd-numbered questions and reports it on the even ones
(answerable questions only where the gold document was retrieved first: otherwise retrieval missed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QA_DIR = ROOT / "benchmarks" / "data" / "qa"
sys.path.insert(0, str(ROOT))


class ReplayModel:
    """Says, for each question, what the real model said in an earlier run (its --details file)."""

    name = "replay"
    context_window = 4096

    def __init__(self, details: Path) -> None:
        self.texts = {}
        for line in details.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            self.texts[record["question"]] = record["model_text"]

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        prompt = messages[-1]["content"]
        question = max((q for q in self.texts if q in prompt), key=len, default=None)
        yield self.texts.get(question, "") if question else ""

    def count_tokens(self, text: str) -> int:
        return len(text) // 3 + 1


def _record(r: Any) -> dict[str, Any]:
    return {"id": r.question.id, "category": r.question.category, "question": r.question.question,
            "model_text": r.model_text, "answer": r.answer, "model_correct": r.model_correct, "correct": r.correct,
            "declined": r.declined, "model_declined": r.model_declined, "passed_gate": r.passed_gate,
            "fallback": r.fallback, "supported": r.supported, "right_doc_first": r.right_doc_first,
            "seconds": r.seconds, "first_draft": r.first_draft, "features": r.features}


def _recorded(details: Path) -> dict[str, dict[str, Any]]:
    if not details.exists():
        return {}
    records = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {record["id"]: record for record in records}


def _from_record(question: Any, record: dict[str, Any]) -> Any:
    from rag.qa import QAResult

    return QAResult(question, record["right_doc_first"], record.get("passed_gate", not record["declined"]),
                    record["model_text"], record["answer"], record["declined"], record.get("model_declined", False),
                    record["fallback"], record["supported"], record.get("seconds", 0.0), record.get("features", {}), record.get("first_draft", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=Path, default=QA_DIR / "questions.jsonl")
    parser.add_argument("--home", type=Path, help="RAG_HOME to build the KB in (default: a temporary one)")
    parser.add_argument("--kb", default="qa")
    parser.add_argument("--ids", help="comma-separated question ids to run")
    parser.add_argument("--retrieval-only", action="store_true", help="no LLM: the gate decides declines")
    parser.add_argument("--calibrate", action="store_true", help="fit the gate on odd ids, check on even ids")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--details", type=Path, help="write every question's result here (JSON lines)")
    parser.add_argument("--resume", action="store_true", help="keep the questions the --details file already "
                        "holds (an earlier, stopped run) and answer the rest, appending to it")
    parser.add_argument("--replay", type=Path, help="a --details file: answer with the model texts it recorded "
                        "(no LLM), to measure the support check, fallback and gate on the same model outputs")
    args = parser.parse_args()

    from rag.config import load_settings
    from rag.qa import build_kb, calibrate_gate, gate_rates, load_questions, run_questions, summarise
    from rag.service import RagService

    questions = load_questions(args.questions)
    if args.ids:
        wanted = set(args.ids.split(","))
        questions = [q for q in questions if q.id in wanted]
    with tempfile.TemporaryDirectory() as scratch:
        service = RagService(load_settings(home=args.home or Path(scratch)))
        started = time.perf_counter()
        build_kb(service, args.kb, [ROOT / "samples", QA_DIR / "docs"])
        ingest_s = time.perf_counter() - started
        if args.replay:
            service.__dict__["chat_model"] = ReplayModel(args.replay)  # the cached_property's slot
        done = _recorded(args.details) if args.resume and args.details else {}
        results = []
        log = args.details.open("a" if args.resume else "w", encoding="utf-8") if args.details else None
        for question in questions:  # one at a time: a stopped run keeps what it measured (--resume goes on)
            if question.id in done:
                results.append(_from_record(question, done[question.id]))
                continue
            result = run_questions(service, args.kb, [question], generate=not args.retrieval_only)[0]
            results.append(result)
            if log is not None:
                log.write(json.dumps(_record(result), ensure_ascii=False) + "\n")
                log.flush()
        if log is not None:
            log.close()
        service.catalog.close()
    summary = summarise(results)
    summary["ingest_s"] = round(ingest_s, 1)
    if results and not args.retrieval_only:
        summary["seconds_per_answer_p50"] = sorted(r.seconds for r in results)[len(results) // 2]
    if args.calibrate:
        # The gate judges retrieved chunks: an answerable question whose gold document was not retrieved
        # first is retrieval's miss, not a gate decision, and is left out of the calibration.
        judged = [r for r in results if r.right_doc_first or not r.question.answerable]
        odd = [r for r in judged if int(r.question.id.lstrip("q")) % 2 == 1]
        even = [r for r in judged if int(r.question.id.lstrip("q")) % 2 == 0]
        choice = calibrate_gate(odd)
        fd, fa = gate_rates(even, choice.bm25_share, choice.similarity)
        summary["calibration"] = {"min_bm25_share": choice.bm25_share, "min_similarity_by_model": choice.similarity,
                                  "tune": {"questions": len(odd), "false_declines": choice.false_declines,
                                           "false_answers": choice.false_answers},
                                  "check": {"questions": len(even), "false_declines": fd, "false_answers": fa}}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    print(f"{'category':9s} {'n':>3s} {'model text':>10s} {'answer':>7s} {'doc first':>9s} {'declined':>8s}")
    for category, row in summary["categories"].items():
        doc = row.get("right_doc_first")
        print(f"{category:9s} {row['questions']:3d} {row['model_accuracy']:10.2f} {row['answer_accuracy']:7.2f} "
              f"{'' if doc is None else f'{doc:.2f}':>9s} {row['declined']:8.2f}")
    for key in ("same_language_model_accuracy", "same_language_answer_accuracy",
                "same_language_answer_or_quote_accuracy", "cross_language_model_accuracy",
                "cross_language_answer_accuracy", "cross_language_answer_or_quote_accuracy",
                "cross_language_right_doc_first", "false_declines",
                "false_answers", "unanswerable_declined", "wrong_answers", "fallbacks", "second_looks", "answer_supported"):
        print(f"{key}: {summary[key]}")
    if "calibration" in summary:
        print("calibration:", json.dumps(summary["calibration"], ensure_ascii=False))


if __name__ == "__main__":
    main()

"""Retrieval across languages and the relevance gate, on our question set (benchmarks/data/qa), no LLM.

    .venv/bin/python benchmarks/bench_cross_language.py [--home DIR] [--json] [--no-switch]

Builds the KB of bench_qa.py (samples/ plus benchmarks/data/qa/docs) and searches each question as the
answer pipeline does (``retrieval.chat_top_k`` sources). Printed per category: right document first,
right document among the sources, the language switch taken, the gate's pass rate; then the gate alone
(false declines among answerable questions, false answers among unanswerable ones) with the current
settings, search p50, and two calibrations, each fitted on one half of the questions (odd ids) and
checked on the other (even ids), and the other way round:

- the language switch (``retrieval.language_switch_bm25_weight``/``_threshold``) on the answerable
  questions: same-language ones must not switch, cross-language ones must;
- the gate (``retrieval.min_bm25_share``/``min_similarity_by_model``) on the answerable questions whose
  right document came first (otherwise retrieval missed, not the gate) and all unanswerable ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QA_DIR = ROOT / "benchmarks" / "data" / "qa"
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=Path, default=QA_DIR / "questions.jsonl")
    parser.add_argument("--home", type=Path, help="RAG_HOME to build the KB in (default: a temporary one)")
    parser.add_argument("--kb", default="qa")
    parser.add_argument("--no-switch", action="store_true", help="search without the language switch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = measure(args.home or Path(scratch), args.kb, args.questions, not args.no_switch)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    print(f"{'category':9s} {'n':>3s} {'doc first':>9s} {'in sources':>10s} {'switched':>8s} {'gate pass':>9s}")
    for category, row in report["categories"].items():
        first = "" if row["right_doc_first"] is None else f"{row['right_doc_first']:.2f}"
        within = "" if row["right_doc_in_sources"] is None else f"{row['right_doc_in_sources']:.2f}"
        print(f"{category:9s} {row['questions']:3d} {first:>9s} {within:>10s} {row['switched']:8.2f} "
              f"{row['gate_pass']:9.2f}")
    for key in ("cross_language_right_doc_first", "same_language_right_doc_first", "gate", "search_p50_ms",
                "ingest_s"):
        print(f"{key}: {json.dumps(report[key], ensure_ascii=False)}")
    for key in ("switch_calibration", "gate_calibration"):
        for direction, fit in report[key].items():
            print(f"{key} {direction}: {json.dumps(fit, ensure_ascii=False)}")


def measure(home: Path, kb: str, questions_file: Path, switch: bool) -> dict[str, Any]:
    from rag.chat import relevance
    from rag.config import load_settings
    from rag.gate import GateSample, calibrate, gate_rates
    from rag.qa import CATEGORIES, build_kb, load_questions, same_source
    from rag.retrieve.language_switch import SwitchSample, fit
    from rag.service import RagService

    settings = load_settings(home=home)
    if not switch:
        settings.retrieval.language_switch = False
    service = RagService(settings)
    started = time.perf_counter()
    build_kb(service, kb, [ROOT / "samples", QA_DIR / "docs"])
    ingest_s = round(time.perf_counter() - started, 1)
    questions = load_questions(questions_file)
    top_k = settings.retrieval.chat_top_k
    service.search(kb, "warm up", top_k=top_k)
    rows: list[dict[str, Any]] = []
    latencies = []
    for question in questions:
        began = time.perf_counter()
        hits = service.search(kb, question.question, top_k=top_k)
        latencies.append((time.perf_counter() - began) * 1000)
        verdicts = relevance(service, kb, question.question, hits)
        switch_info = hits[0].explain.get("language_switch", {}) if hits else {}
        rows.append({"id": question.id, "number": int("".join(c for c in question.id if c.isdigit()) or 0),
                     "category": question.category, "answerable": question.answerable,
                     "cross": question.cross_language,
                     "right_doc_first": bool(hits) and same_source(hits[0].source, question.doc),
                     "right_doc_in_sources": any(same_source(h.source, question.doc) for h in hits),
                     "switched": bool(switch_info.get("switched")), "switch": switch_info,
                     "gate_pass": any(v.passes for v in verdicts),
                     "gate_hits": [(v.bm25_share, v.similarity) for v in verdicts]})
    service.catalog.close()

    categories: dict[str, Any] = {}
    for category in CATEGORIES:
        group = [r for r in rows if r["category"] == category]
        if group:
            answerable = category != "none"
            categories[category] = {
                "questions": len(group),
                "right_doc_first": _share(r["right_doc_first"] for r in group) if answerable else None,
                "right_doc_in_sources": _share(r["right_doc_in_sources"] for r in group) if answerable else None,
                "switched": _share(r["switched"] for r in group), "gate_pass": _share(r["gate_pass"] for r in group)}

    def gate_sample(r: dict[str, Any]) -> GateSample:
        return GateSample(r["answerable"], tuple((share, dict(sim)) for share, sim in r["gate_hits"]))

    # The gate judges retrieved chunks: an answerable question whose gold document is not first is
    # retrieval's miss, left out of the gate's figures and calibration.
    judged = [r for r in rows if r["right_doc_first"] or not r["answerable"]]
    current = gate_rates([gate_sample(r) for r in judged], settings.retrieval.min_bm25_share,
                         _groups(settings.retrieval.min_similarity_by_model))
    answerable = [r for r in rows if r["answerable"]]
    gate_fits, switch_fits = {}, {}
    for name, tune_parity in (("tune_odd_check_even", 1), ("tune_even_check_odd", 0)):
        tune = [r for r in judged if r["number"] % 2 == tune_parity]
        check = [r for r in judged if r["number"] % 2 != tune_parity]
        choice = calibrate([gate_sample(r) for r in tune])
        fd, fa = gate_rates([gate_sample(r) for r in check], choice.bm25_share, choice.similarity)
        gate_fits[name] = {"min_bm25_share": choice.bm25_share,
                           "min_similarity_by_model": choice.settings_thresholds(),
                           "tune": {"questions": len(tune), "false_declines": choice.false_declines,
                                    "false_answers": choice.false_answers},
                           "check": {"questions": len(check), "false_declines": fd, "false_answers": fa}}
        with_switch = [r for r in answerable if r["switch"]]
        tune_s = [_switch_sample(r, SwitchSample) for r in with_switch if r["number"] % 2 == tune_parity]
        check_s = [(r["id"], _switch_sample(r, SwitchSample)) for r in with_switch if r["number"] % 2 != tune_parity]
        if tune_s and any(s.cross_language for s in tune_s) and not all(s.cross_language for s in tune_s):
            result = fit(tune_s)
            wrong = [qid for qid, s in check_s
                     if (s.similarity_gap - result.bm25_weight * s.bm25_share > result.threshold) != s.cross_language]
            switch_fits[name] = {**asdict(result), "check_questions": len(check_s), "check_wrong": wrong}

    same = [r for r in answerable if not r["cross"]]
    cross = [r for r in answerable if r["cross"]]
    return {
        "questions": len(rows), "switch": switch, "sources": top_k, "categories": categories,
        "cross_language_right_doc_first": _share(r["right_doc_first"] for r in cross),
        "same_language_right_doc_first": _share(r["right_doc_first"] for r in same),
        "gate": {"questions": len(judged), "false_declines": current[0], "false_answers": current[1],
                 "declined": [r["id"] for r in judged if r["answerable"] and not r["gate_pass"]],
                 "let_through": [r["id"] for r in judged if not r["answerable"] and r["gate_pass"]]},
        "search_p50_ms": round(statistics.median(latencies), 1), "ingest_s": ingest_s,
        "switch_calibration": switch_fits, "gate_calibration": gate_fits,
        "settings": {"language_switch_bm25_weight": settings.retrieval.language_switch_bm25_weight,
                     "language_switch_threshold": settings.retrieval.language_switch_threshold,
                     "min_bm25_share": settings.retrieval.min_bm25_share,
                     "min_similarity_by_model": settings.retrieval.min_similarity_by_model},
    }


def _switch_sample(row: dict[str, Any], kind: Any) -> Any:
    info = row["switch"]
    return kind(float(info["similarity_gap"]), float(info["bm25_share"]), bool(row["cross"]))


def _groups(thresholds: dict[str, float]) -> dict[str, float]:
    """Settings keys as the calibration's groups ("usem3@en" → "usem3@*")."""
    from rag.gate import threshold_group

    return {threshold_group(key): value for key, value in thresholds.items()}


def _share(values: Any) -> float | None:
    items = list(values)
    return round(sum(items) / len(items), 4) if items else None


if __name__ == "__main__":
    main()

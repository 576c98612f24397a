"""The relevance gate on answerable and unanswerable questions from two sources, no LLM.

    .venv/bin/python benchmarks/bench_gate.py [--beir ../shared/datasets/cmrc-trial] [--home DIR] [--json]

- Our question set (benchmarks/data/qa, the KB of bench_qa.py): its answerable questions whose right
  document comes first (otherwise retrieval missed, not the gate) and its unanswerable ones.
- A BEIR set's questions, each twice: over the whole corpus (answerable, when a gold passage comes
  first), and with its gold passages held out (unanswerable: the hits from other documents, and what
  the query could score at best over the other documents' chunks). So a Wikipedia-style corpus gives a
  thousand near misses for the gate to decline, beside our set's ten unanswerable questions.

Printed: the gate's false declines and false answers with the current settings on each part, then two
calibrations (``rag.gate.calibrate``), each fitted on one half and checked on the other: our odd ids
with the BEIR questions after the first ``--eval-queries`` (the questions `rag eval --limit 200`
answers), checked on our even ids and those first questions; then our even ids with the same BEIR tail.
A false answer of the gate alone is not final: the model's decline and the support check still stand.
``--answer N`` measures that: N BEIR questions after the first ``--eval-queries`` (distinct gold
passages) are asked through the whole answer pipeline, bundled LLM included, of a KB without their gold
passages; printed: how many it declined.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QA_DIR = ROOT / "benchmarks" / "data" / "qa"
DEFAULT_BEIR = ROOT.parent / "shared" / "datasets" / "cmrc-trial"
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", type=Path, default=DEFAULT_BEIR, help="a BEIR folder (default: %(default)s)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--eval-queries", type=int, default=200, help="the BEIR questions kept for checking")
    parser.add_argument("--home", type=Path, help="RAG_HOME to build the KBs in (default: a temporary one)")
    parser.add_argument("--answer", type=int, default=0, metavar="N",
                        help="ask N held-out questions through the whole answer pipeline (needs the LLM)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = measure(args.home or Path(scratch), args.beir, args.split, args.eval_queries, args.answer)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    for key, value in report.items():
        print(f"{key}: {json.dumps(value, ensure_ascii=False)}")


def measure(home: Path, beir: Path, split: str, eval_queries: int, answer: int = 0) -> dict[str, Any]:
    from rag.config import load_settings
    from rag.gate import calibrate, gate_rates, threshold_group
    from rag.service import RagService

    settings = load_settings(home=home)
    service = RagService(settings)
    try:
        ours = qa_samples(service)
        theirs = held_out_samples(service, beir, split)
        asked = held_out_answers(service, beir, split, eval_queries, answer) if answer else None
    finally:
        service.catalog.close()
    retrieval = settings.retrieval
    current = (retrieval.min_bm25_share,
               {threshold_group(key): value for key, value in retrieval.min_similarity_by_model.items()})
    head, tail = theirs[:eval_queries], theirs[eval_queries:]
    odd = [sample for number, sample in ours if number % 2]
    even = [sample for number, sample in ours if not number % 2]
    flat = [sample for _, pair in theirs for sample in pair]
    beir_head = [sample for _, pair in head for sample in pair]
    beir_tail = [sample for _, pair in tail for sample in pair]

    def rates(samples: list[Any], share: float, similarity: dict[str, float]) -> dict[str, float]:
        false_declines, false_answers = gate_rates(samples, share, similarity)
        return {"false_declines": false_declines, "false_answers": false_answers,
                "answerable": sum(s.answerable for s in samples), "unanswerable": sum(not s.answerable for s in samples)}

    report: dict[str, Any] = {
        "beir": beir.name,
        "settings": {"min_bm25_share": current[0], "min_similarity_by_model": retrieval.min_similarity_by_model},
        "current": {"qa": rates(odd + even, *current), f"{beir.name}_first_{eval_queries}": rates(beir_head, *current),
                    f"{beir.name}_all": rates(flat, *current)},
    }
    if asked is not None:
        report["held_out_answered"] = asked
    for name, tune_ours, check_ours in (("tune_odd_check_even", odd, even), ("tune_even_check_odd", even, odd)):
        choice = calibrate(tune_ours + beir_tail)
        report[name] = {
            "min_bm25_share": choice.bm25_share, "min_similarity_by_model": choice.settings_thresholds(),
            "tune": {"false_declines": choice.false_declines, "false_answers": choice.false_answers},
            "check_qa": rates(check_ours, choice.bm25_share, choice.similarity),
            f"check_{beir.name}_first_{eval_queries}": rates(beir_head, choice.bm25_share, choice.similarity)}
    return report


def qa_samples(service: Any) -> list[tuple[int, Any]]:
    """(question number, gate sample) for our set's judged questions."""
    from rag.chat import relevance
    from rag.gate import GateSample
    from rag.qa import build_kb, load_questions, same_source

    build_kb(service, "qa", [ROOT / "samples", QA_DIR / "docs"])
    top_k = service.settings.retrieval.chat_top_k
    samples = []
    for question in load_questions(QA_DIR / "questions.jsonl"):
        hits = service.search("qa", question.question, top_k=top_k)
        if question.answerable and not (hits and same_source(hits[0].source, question.doc)):
            continue
        verdicts = relevance(service, "qa", question.question, hits)
        number = int("".join(c for c in question.id if c.isdigit()) or 0)
        samples.append((number, GateSample(question.answerable,
                                           tuple((v.bm25_share, dict(v.similarity)) for v in verdicts))))
    return samples


def held_out_samples(service: Any, folder: Path, split: str) -> list[tuple[str, list[Any]]]:
    """Per BEIR question: [answerable sample (when a gold passage is first)] + its held-out sample."""
    from ingest.planning import SyncStrategy
    from rag.chat import gate_thresholds
    from rag.evaluate import corpus_documents, load_beir
    from rag.gate import GateSample, attainable_bm25, judge, subject_terms
    from rag.indexing import IngestRequest

    dataset = load_beir(folder, split)
    kb = "gate-" + dataset.name
    if not service.catalog.kb_exists(kb):
        service.create_kb(kb, f"gate calibration copy of {dataset.name}")
    files, parsed = corpus_documents(dataset.corpus)
    service.indexer.ingest(kb, IngestRequest(files, origin=f"sync:{dataset.name}", strategy=SyncStrategy.MIRROR,
                                             preparsed=parsed))
    reader = service.index.reader(kb)
    thresholds = gate_thresholds(service.settings.retrieval)
    top_k = service.settings.retrieval.chat_top_k

    def term_score(excluded: set[str]) -> Any:
        def score(term: str) -> float | None:
            ids, scores = reader.bm25_top_k([term], 32)
            rows = reader.chunks([int(i) for i in ids])
            return next((float(s) for i, s in zip(ids, scores, strict=True) if rows[int(i)].doc_id not in excluded), None)
        return score

    samples = []
    for qid, query in dataset.queries.items():
        if qid not in dataset.qrels or not query.strip():
            continue
        gold = set(dataset.qrels[qid])
        hits = service.search(kb, query, top_k=top_k + 8)
        terms = subject_terms(query)
        pair = []
        whole = hits[:top_k]
        if whole and whole[0].doc_id in gold:
            attainable = attainable_bm25(terms, term_score(set()))
            pair.append(GateSample(True, tuple(_features(judge(h, attainable, thresholds)) for h in whole)))
        others = [h for h in hits if h.doc_id not in gold][:top_k]
        attainable = attainable_bm25(terms, term_score(gold))
        pair.append(GateSample(False, tuple(_features(judge(h, attainable, thresholds)) for h in others)))
        samples.append((qid, pair))
    return samples


def held_out_answers(service: Any, folder: Path, split: str, skip: int, count: int) -> dict[str, Any]:
    """Questions whose gold passages are not in the KB, through the whole pipeline: how many are declined."""
    from ingest.planning import SyncStrategy
    from rag.chat import answer_question
    from rag.evaluate import corpus_documents, load_beir
    from rag.indexing import IngestRequest

    dataset = load_beir(folder, split)
    queries = [q for q in dataset.queries if q in dataset.qrels and dataset.queries[q].strip()][skip:]
    chosen: list[str] = []
    removed: set[str] = set()
    for qid in queries[::7]:  # spread over the set; one question per gold passage
        gold = set(dataset.qrels[qid])
        if not gold & removed:
            chosen.append(qid)
            removed |= gold
        if len(chosen) == count:
            break
    kb = "held-out-" + dataset.name
    if service.catalog.kb_exists(kb):
        service.delete_kb(kb)
    service.create_kb(kb, f"{dataset.name} without the gold passages of {len(chosen)} questions")
    files, parsed = corpus_documents([r for r in dataset.corpus if str(r["_id"]) not in removed])
    service.indexer.ingest(kb, IngestRequest(files, origin=f"sync:{dataset.name}", strategy=SyncStrategy.MIRROR,
                                             preparsed=parsed))
    answered = []
    for qid in chosen:
        answer = answer_question(service, kb, [{"role": "user", "content": dataset.queries[qid]}])
        if answer.grounded:
            answered.append({"id": qid, "question": dataset.queries[qid], "answer": answer.answer})
    return {"questions": len(chosen), "declined": len(chosen) - len(answered), "answered": answered}


def _features(verdict: Any) -> tuple[float, dict[str, float]]:
    return verdict.bm25_share, dict(verdict.similarity)


if __name__ == "__main__":
    main()

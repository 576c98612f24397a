"""`rag eval`: retrieval (and optionally answer) quality on a BEIR-layout dataset."""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ingest.discovery import SourceFile
from ingest.models import ParsedDocument, Section
from ingest.planning import SyncStrategy
from rag.errors import InvalidInput
from rag.indexing import IngestRequest, ProgressCallback

if TYPE_CHECKING:
    from rag.service import RagService


@dataclass(slots=True)
class BeirDataset:
    name: str
    corpus: list[dict[str, Any]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]]


def load_beir(folder: Path, split: str) -> BeirDataset:
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path, qrels_path):
        if not path.exists():
            raise InvalidInput(f"not a BEIR folder for split '{split}': missing {path}")
    corpus = [json.loads(line) for line in corpus_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = {}
    for line in queries_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            queries[str(record["_id"])] = record["text"]
    qrels: dict[str, dict[str, int]] = {}
    for line in qrels_path.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 3 and int(parts[2]) > 0:
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    answers: dict[str, list[str]] = {}
    answers_path = folder / "answers.jsonl"
    if answers_path.exists():
        for line in answers_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                answers[str(record["_id"])] = list(record["answers"])
    return BeirDataset(folder.resolve().name, corpus, queries, qrels, answers)


def corpus_documents(corpus: list[dict[str, Any]]) -> tuple[list[SourceFile], dict[str, ParsedDocument]]:
    files, parsed = [], {}
    for record in corpus:
        doc_id = str(record["_id"])
        title = (record.get("title") or "").strip() or None
        parsed[doc_id] = ParsedDocument(source=doc_id, sections=[Section(text=record["text"], heading=title)],
                                        format="beir", title=title)
        files.append(SourceFile(Path(doc_id), doc_id, doc_id=doc_id))
    return files, parsed


def normalise_answer(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not (ch.isspace() or unicodedata.category(ch).startswith("P")))


def answer_f1(prediction: str, golds: list[str]) -> float:
    """Character-level F1 against the best gold answer (CMRC 2018 style)."""
    pred = normalise_answer(prediction)
    best = 0.0
    for gold in golds:
        ref = normalise_answer(gold)
        if not pred or not ref:
            continue
        common = _lcs_length(pred, ref)
        if common:
            precision, recall = common / len(pred), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _lcs_length(a: str, b: str) -> int:
    # CMRC's official F1 uses the longest common substring of the two strings.
    best = 0
    table = [0] * (len(b) + 1)
    for ch in a:
        previous = 0
        for j, other in enumerate(b, start=1):
            current = table[j]
            table[j] = previous + 1 if ch == other else 0
            best = max(best, table[j])
            previous = current
    return best


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def run_eval(
    service: RagService,
    folder: Path,
    split: str = "test",
    limit: int | None = None,
    mode: str = "hybrid",
    generate: bool = False,
    kb: str | None = None,
    progress: ProgressCallback | None = None,
    details: Path | None = None,
) -> dict[str, Any]:
    """Retrieval figures over the split's judged queries; with ``generate``, answer figures too.

    ``details``: a JSON-lines file that gets one record per generated answer as soon as it is made
    (question, gold answers, the model's text, the delivered answer, scores), so a long run that is
    stopped still leaves what it measured.
    """
    if mode not in {"hybrid", "bm25", "dense"}:
        raise InvalidInput("mode must be hybrid, bm25 or dense")
    dataset = load_beir(folder, split)
    kb = kb or "eval-" + re.sub(r"[^\w-]", "-", dataset.name)[:58]
    if not service.catalog.kb_exists(kb):
        service.create_kb(kb, f"evaluation copy of {dataset.name}")
    files, parsed = corpus_documents(dataset.corpus)
    request = IngestRequest(files, origin=f"sync:{dataset.name}", strategy=SyncStrategy.MIRROR, preparsed=parsed)
    service.indexer.ingest(kb, request, progress=progress)

    # A judged query with no text cannot be searched; it is left out rather than failing the run.
    query_ids = [q for q in dataset.queries if q in dataset.qrels and dataset.queries[q].strip()]
    if limit:
        query_ids = query_ids[:limit]
    if not query_ids:
        raise InvalidInput(f"no queries of {dataset.name} have judgements in split '{split}'")
    service.search(kb, dataset.queries[query_ids[0]], top_k=10, mode=mode)  # load models before timing

    ndcg, r10, r100, mrr, answer_hits, latencies = [], [], [], [], [], []
    for qid in query_ids:
        started = time.perf_counter()
        hits = service.search(kb, dataset.queries[qid], top_k=200, mode=mode)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = list(dict.fromkeys(hit.doc_id for hit in hits))
        relevant = dataset.qrels[qid]
        ndcg.append(ndcg_at(ranked, relevant, 10))
        r10.append(len(set(ranked[:10]) & relevant.keys()) / len(relevant))
        r100.append(len(set(ranked[:100]) & relevant.keys()) / len(relevant))
        mrr.append(next((1 / (i + 1) for i, doc in enumerate(ranked[:10]) if doc in relevant), 0.0))
        if qid in dataset.answers:
            top_text = normalise_answer(" ".join(hit.text for hit in hits[:5]))
            answer_hits.append(any(normalise_answer(a) in top_text for a in dataset.answers[qid] if a.strip()))

    result: dict[str, Any] = {
        "dataset": dataset.name,
        "split": split,
        "mode": mode,
        "queries": len(query_ids),
        "ndcg@10": round(float(np.mean(ndcg)), 4),
        "recall@10": round(float(np.mean(r10)), 4),
        "recall@100": round(float(np.mean(r100)), 4),
        "mrr@10": round(float(np.mean(mrr)), 4),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
    }
    if answer_hits:
        result["answer_recall@5"] = round(float(np.mean(answer_hits)), 4)
    if generate:
        result.update(_generation_metrics(service, kb, dataset, query_ids, details))
    return result


def _generation_metrics(service: RagService, kb: str, dataset: BeirDataset, query_ids: list[str],
                        details: Path | None = None) -> dict[str, Any]:
    from rag.chat import answer_question  # the answer pipeline; imported late so retrieval eval needs no LLM
    from rag.qa import answer_claim

    with_answers = [q for q in query_ids if q in dataset.answers]
    if not with_answers:
        raise InvalidInput(f"--generate needs answers.jsonl in {dataset.name}")
    scores: dict[str, list[float]] = {name: [] for name in (
        "answer_contains", "answer_contains_claim", "answer_f1", "answer_em", "answer_rouge_l",
        "answer_contains_model", "answer_em_model", "answer_rouge_l_model", "declined", "fallback", "second_look")}
    seconds: list[float] = []
    claims = supported = 0
    log = details.open("w", encoding="utf-8") if details else None
    for qid in with_answers:
        started = time.perf_counter()
        answer = answer_question(service, kb, [{"role": "user", "content": dataset.queries[qid]}])
        seconds.append(time.perf_counter() - started)
        golds = dataset.answers[qid]
        for suffix, text in (("", answer.answer), ("_model", answer.generated)):
            scores["answer_contains" + suffix].append(answer_contains(text, golds))
            scores["answer_em" + suffix].append(answer_em(text, golds))
            scores["answer_rouge_l" + suffix].append(answer_rouge_l(text, golds))
        # The strict reading: the evidence quotes under the model's words do not count (a wrong model sentence
        # above a quote holding the gold span leaves the reader two answers). rag/qa.py scores its set this way.
        scores["answer_contains_claim"].append(answer_contains(answer_claim(answer.answer), golds))
        scores["answer_f1"].append(answer_f1(answer.answer, golds))
        scores["declined"].append(not answer.grounded)
        scores["fallback"].append(answer.fallback)
        scores["second_look"].append(answer.second_look)
        claims += answer.claims
        supported += round((answer.supported or 0.0) * answer.claims)
        if log is not None:
            record = {"id": qid, "question": dataset.queries[qid], "answers": golds, "model_text": answer.generated,
                      "answer": answer.answer, "grounded": answer.grounded, "fallback": answer.fallback,
                      "second_look": answer.second_look, "first_draft": answer.first_draft,
                      "supported": answer.supported, "claims": answer.claims, "seconds": round(seconds[-1], 2),
                      **{name: float(values[-1]) for name, values in scores.items()
                         if name.startswith(("answer_contains", "answer_em"))}}
            log.write(json.dumps(record, ensure_ascii=False) + "\n")
            log.flush()
    if log is not None:
        log.close()
    result = {name: round(float(np.mean(values)), 4) for name, values in scores.items()
              if name not in {"declined", "fallback", "second_look"}}
    # Share of the model's answer sentences (declines aside) backed by the source they cite (rag/answer_check.py).
    result["answer_supported"] = round(supported / claims, 4) if claims else None
    # Every question here has a gold answer: a declined one is a false decline.
    result["false_declines"] = round(float(np.mean(scores["declined"])), 4)
    result["answer_fallbacks"] = round(float(np.mean(scores["fallback"])), 4)
    result["answer_second_looks"] = round(float(np.mean(scores["second_look"])), 4)
    result["answer_seconds_p50"] = round(float(np.percentile(seconds, 50)), 2)
    return result


def answer_contains(text: str, golds: list[str]) -> bool:
    predicted = normalise_answer(text)
    return any(normalise_answer(g) and normalise_answer(g) in predicted for g in golds)


def answer_em(text: str, golds: list[str]) -> bool:
    """Exact match after normalisation (the answer is the gold span and nothing else)."""
    predicted = normalise_answer(CITATION_TAIL.sub("", text))
    return any(normalise_answer(g) and normalise_answer(g) == predicted for g in golds)


CITATION_TAIL = re.compile(r"\s*\[\d{1,2}\]")


class _RougeTokens:
    """rouge-score's tokenizer hook: single characters for Chinese (its default drops non-ASCII), words otherwise."""

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        tokens: list[str] = []
        for word in re.findall(r"[\u3400-\u9fff\uf900-\ufaff]|[a-z0-9]+", text):
            tokens.append(word)
        return tokens


def answer_rouge_l(text: str, golds: list[str]) -> float:
    """ROUGE-L F1 against the best gold answer (rouge-score, character tokens for CJK)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_RougeTokens())
    text = CITATION_TAIL.sub("", text)
    return max((scorer.score(gold, text)["rougeL"].fmeasure for gold in golds if gold.strip()), default=0.0)

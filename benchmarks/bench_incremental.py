"""Retrieval quality on a KB built through 50 incremental commits with deletes in between, next to one built in one go.

    .venv/bin/python benchmarks/bench_incremental.py [--commits 50] [--home DIR] [--json]
        [--dataset ../shared/datasets/scifact:train] [--dataset ../shared/datasets/cmrc-trial:test]

For each BEIR dataset (folder:split), in one RagService (real models, the local segmented engine):
- **one go**: `rag eval`'s own `run_eval` builds the KB from the corpus in a single ingest and measures it;
- **incremental**: the corpus, shuffled, is ingested in ``--commits`` batches, one commit each; after every
  fifth batch some already indexed documents are deleted (a commit of its own), and every deleted document
  is ingested again in a later batch, so the final KB holds the same documents. Background merges run as
  they would for a user. Then `run_eval` measures this KB too: its mirror sync finds every document
  unchanged (checked: the KB's generation does not move), so the figures are those of the incremental build.
Both builds use the same origin as `rag eval` (``sync:DATASET``) and no timed mid-ingest commits
(``ingest.commit_seconds`` raised for the run), so the one-go KB really is one commit. ``--home`` keeps the
RAG_HOME (embedding cache and the one-go KBs) for the next run; the incremental KB is always rebuilt.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.planning import SyncStrategy
from rag.config import load_settings
from rag.evaluate import corpus_documents, load_beir, run_eval
from rag.indexing import IngestRequest
from rag.service import RagService

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DEFAULT_DATASETS = [f"{DATASETS / 'scifact'}:train", f"{DATASETS / 'cmrc-trial'}:test"]
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "answer_recall@5")
DELETE_EVERY = 5  # a delete commit after every fifth ingest batch
DELETE_SHARE = 0.03  # of the documents indexed so far, per delete commit


@dataclass
class Build:
    commits: int = 0
    delete_commits: int = 0
    deleted: int = 0
    seconds: float = 0.0


def build_incremental(service: RagService, kb: str, folder: Path, split: str, commits: int, seed: int) -> Build:
    dataset = load_beir(folder, split)
    files, parsed = corpus_documents(dataset.corpus)
    origin = f"sync:{dataset.name}"  # the origin run_eval gives the dataset's documents
    by_id = {file.doc_id: file for file in files}
    order = list(by_id)
    random.Random(seed).shuffle(order)
    batches = [order[i * len(order) // commits:(i + 1) * len(order) // commits] for i in range(commits)]
    rng = random.Random(seed + 1)
    indexed: list[str] = []
    to_readd: list[str] = []
    build = Build()
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        last = i == commits - 1
        # Documents deleted two or more batches ago come back with this batch (all of them with the last).
        readd, to_readd = (to_readd, []) if last else (to_readd[: len(to_readd) // 2], to_readd[len(to_readd) // 2:])
        ids = batch + readd
        request = IngestRequest([by_id[d] for d in ids], origin=origin, strategy=SyncStrategy.UPSERTS,
                                preparsed={d: parsed[d] for d in ids})
        report = service.indexer.ingest(kb, request)
        if report.failed or report.added + report.updated != len(ids):
            raise RuntimeError(f"batch {i}: {report.to_json()}")
        indexed.extend(ids)
        build.commits += 1
        if (i + 1) % DELETE_EVERY == 0 and not last:
            victims = rng.sample(indexed, max(1, round(DELETE_SHARE * len(indexed))))
            service.indexer.delete_documents(kb, victims)
            build.delete_commits += 1
            build.deleted += len(victims)
            gone = set(victims)
            indexed = [d for d in indexed if d not in gone]
            to_readd.extend(victims)
    build.seconds = time.perf_counter() - started
    if to_readd:
        raise AssertionError(f"{len(to_readd)} deleted documents were not added again")
    return build


def doc_ids(service: RagService, kb: str) -> set[str]:
    return {doc.doc_id for doc in service.list_documents(kb) if doc.status == "indexed"}


def run_dataset(service: RagService, folder: Path, split: str, commits: int, seed: int) -> dict[str, Any]:
    name = folder.resolve().name
    one_kb, incr_kb = f"oneshot-{name}"[:64], f"incremental-{name}"[:64]
    started = time.perf_counter()
    one = run_eval(service, folder, split, kb=one_kb)
    one_seconds = time.perf_counter() - started  # the build (if not kept from an earlier run) and the eval

    if service.catalog.kb_exists(incr_kb):
        service.delete_kb(incr_kb)
    service.create_kb(incr_kb, f"{commits} incremental commits of {name}")
    build = build_incremental(service, incr_kb, folder, split, commits, seed)
    generation = service.get_kb(incr_kb).generation
    incr = run_eval(service, folder, split, kb=incr_kb)
    if service.get_kb(incr_kb).generation != generation:
        raise AssertionError("run_eval's sync changed the incremental KB: it was not the same corpus")
    same_docs = doc_ids(service, one_kb) == doc_ids(service, incr_kb)
    one_info, incr_info = service.get_kb(one_kb), service.get_kb(incr_kb)
    return {
        "dataset": name, "split": split, "queries": one["queries"],
        "same_documents": same_docs,
        "documents": [one_info.documents, incr_info.documents], "chunks": [one_info.chunks, incr_info.chunks],
        "incremental": {"ingest_commits": build.commits, "delete_commits": build.delete_commits,
                        "documents_deleted_and_readded": build.deleted, "build_s": round(build.seconds, 1),
                        "generation": generation},
        "one_go_s": round(one_seconds, 1),
        "one_go": {m: one[m] for m in METRICS if m in one},
        "incremental_metrics": {m: incr[m] for m in METRICS if m in incr},
        "p50_ms": [one["p50_ms"], incr["p50_ms"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", default=None,
                        help="FOLDER:SPLIT, repeatable (default: SciFact train and CMRC trial test)")
    parser.add_argument("--commits", type=int, default=50)
    parser.add_argument("--home", type=Path, default=None, help="RAG_HOME to keep and reuse (default: temporary)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--json", action="store_true", help="one JSON object per dataset")
    args = parser.parse_args()
    specs = args.dataset or DEFAULT_DATASETS

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=args.home or Path(tmp) / "home")
        service = RagService(settings)
        service.indexer.commit_seconds = 1e9  # one commit per ingest: the batches are the commits counted
        service.warm_up()
        for spec in specs:
            folder, _, split = spec.rpartition(":")
            result = run_dataset(service, Path(folder), split, args.commits, args.seed)
            if args.json:
                print(json.dumps(result), flush=True)
                continue
            inc = result["incremental"]
            print(f"{result['dataset']} {result['split']}: {result['queries']} queries, documents "
                  f"{result['documents'][0]} / {result['documents'][1]} (same set: {result['same_documents']}), "
                  f"chunks {result['chunks'][0]} / {result['chunks'][1]}")
            print(f"  incremental: {inc['ingest_commits']} ingest commits + {inc['delete_commits']} delete commits, "
                  f"{inc['documents_deleted_and_readded']} documents deleted and added again, "
                  f"built in {inc['build_s']} s")
            print(f"  {'metric':16s} {'one go':>8s} {'incremental':>12s}")
            for metric, value in result["one_go"].items():
                print(f"  {metric:16s} {value:8.4f} {result['incremental_metrics'][metric]:12.4f}")
            print(f"  {'search p50 ms':16s} {result['p50_ms'][0]:8.1f} {result['p50_ms'][1]:12.1f}", flush=True)


if __name__ == "__main__":
    main()

"""Search latency of BM25, dense and hybrid retrieval, and bm25s against the reference rank-bm25.

    .venv/bin/python benchmarks/bench_search.py --kb eval-scifact [--queries ../shared/datasets/scifact/queries.jsonl]
    .venv/bin/python benchmarks/bench_search.py --bm25-only --chunks 200000

Latencies are per `RagService.search` call with models loaded (p50/p95, ms). The BM25 comparison
times one query over a synthetic corpus with both libraries in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

DEFAULT_QUERIES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact" / "queries.jsonl"


def search_latency(kb: str, queries_path: Path, limit: int) -> None:
    from rag.config import load_settings
    from rag.service import RagService

    service = RagService(load_settings())
    queries = [json.loads(line)["text"] for line in queries_path.open(encoding="utf-8")][:limit]
    service.search(kb, queries[0])
    for mode in ("bm25", "dense", "hybrid"):
        times = []
        for query in queries:
            started = time.perf_counter()
            service.search(kb, query, top_k=10, mode=mode)  # type: ignore[arg-type]
            times.append((time.perf_counter() - started) * 1000)
        print(f"{mode:7s} p50 {np.percentile(times, 50):7.2f} ms   p95 {np.percentile(times, 95):7.2f} ms   "
              f"({len(times)} queries)")


def bm25_libraries(chunks: int) -> None:
    from rank_bm25 import BM25Okapi

    from rag.store.bm25_index import BM25Index, BM25Params

    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(50_000)]
    weights = [1 / (i + 1) for i in range(len(vocabulary))]  # Zipf-like term frequencies
    corpus = [rng.choices(vocabulary, weights, k=60) for _ in range(chunks)]
    queries = [rng.sample(vocabulary[100:5000], 4) for _ in range(20)]
    ours = BM25Index.build(list(range(chunks)), corpus, BM25Params(method="robertson"))
    reference = BM25Okapi(corpus)
    timings = {}
    for name, run in (("bm25s (ours)", lambda q: ours.search(q, 10)), ("rank-bm25", reference.get_scores)):
        started = time.perf_counter()
        for query in queries[:5]:
            run(query)
        timings[name] = (time.perf_counter() - started) / 5 * 1000
    for name, ms in timings.items():
        print(f"{name:14s} {ms:9.2f} ms per query over {chunks} chunks")
    print(f"speed-up       {timings['rank-bm25'] / timings['bm25s (ours)']:9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", default="eval-scifact")
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--bm25-only", action="store_true")
    parser.add_argument("--chunks", type=int, default=200_000)
    args = parser.parse_args()
    if not args.bm25_only:
        search_latency(args.kb, args.queries, args.limit)
    bm25_libraries(args.chunks)


if __name__ == "__main__":
    main()

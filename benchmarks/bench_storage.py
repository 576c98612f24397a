"""Storage of a KB before and after deleting half its documents and running `rag gc`.

    .venv/bin/python benchmarks/bench_storage.py [--documents 200] [--json]

Uploads SciFact abstracts (../shared/datasets/scifact, or generated text when absent) as documents of
one KB in a fresh RAG_HOME, then prints the bytes of the catalog file, the KB's index folder and its
uploads folder, and the catalog's embedding rows: after the upload, after deleting every other document,
and after `rag gc` (collect_garbage) — with the cache of unused vectors at its default and at 0.
"""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.config import load_settings  # noqa: E402
from rag.gc import tree_bytes  # noqa: E402
from rag.service import RagService  # noqa: E402


def corpus(count: int) -> list[tuple[str, str]]:
    path = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
    if path.exists():
        records = []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                records.append((f"{record['_id']}.txt", f"{record.get('title', '')}\n\n{record['text']}"))
                if len(records) == count:
                    break
        return records
    return [(f"doc-{i}.txt", f"Document {i}. " + " ".join(f"word{i * 7 + j}" for j in range(300)))
            for i in range(count)]


def figures(service: RagService, kb: str) -> dict[str, Any]:
    catalog = service.settings.catalog_path
    wal = catalog.with_name(catalog.name + "-wal")
    with sqlite3.connect(catalog) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    storage = service.kb_storage(kb)
    catalog_bytes = catalog.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    index_bytes = tree_bytes(service.kb_dir(kb))
    uploads_bytes = tree_bytes(service.uploads.kb_folder(kb))
    return {"documents": len(service.list_documents(kb)), "catalog_file_bytes": catalog_bytes,
            "index_bytes": index_bytes, "uploads_bytes": uploads_bytes,
            "total_bytes": catalog_bytes + index_bytes + uploads_bytes,
            "kb_chunk_text_bytes": storage.catalog_bytes, "embedding_rows": service.catalog.embedding_count(),
            "live_chunks": service.get_kb(kb).chunks}


def run(documents: int, keep: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        overrides: dict[str, Any] = {"home": Path(home)}
        settings = load_settings(**overrides)
        if keep is not None:
            settings.store.unused_embeddings_kept = keep
        service = RagService(settings)
        service.create_kb("bench")
        service.upload("bench", [(name, io.BytesIO(text.encode("utf-8"))) for name, text in corpus(documents)])
        result: dict[str, Any] = {"unused_embeddings_kept": settings.store.unused_embeddings_kept,
                                  "before": figures(service, "bench")}
        for doc in service.list_documents("bench")[::2]:
            service.delete_document("bench", doc.doc_id)
        result["after_delete"] = figures(service, "bench")
        result["gc"] = service.collect_garbage().to_json()
        result["after_gc"] = figures(service, "bench")
        service.collect_garbage(vacuum=True)
        result["after_gc_vacuum"] = figures(service, "bench")
        service.catalog.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run(args.documents, None), run(args.documents, 0)]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for result in results:
        print(f"unused_embeddings_kept={result['unused_embeddings_kept']}")
        for stage in ("before", "after_delete", "after_gc", "after_gc_vacuum"):
            f = result[stage]
            print(f"  {stage:16} docs={f['documents']:4} catalog={f['catalog_file_bytes']:>10,} "
                  f"index={f['index_bytes']:>10,} uploads={f['uploads_bytes']:>9,} total={f['total_bytes']:>11,} "
                  f"embeddings={f['embedding_rows']}")


if __name__ == "__main__":
    main()

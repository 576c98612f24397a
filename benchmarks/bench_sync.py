"""Incremental sync vs full ingest: a KB of N small text files, then a sync after one file changed.

    .venv/bin/python benchmarks/bench_sync.py [--docs 5000] [--workdir DIR] [--json]

Both figures are measured in one process with the embedding model already loaded, so neither pays the
model's load time. The target: the one-file sync takes under 5% of the full ingest.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.config import load_settings  # noqa: E402
from rag.service import RagService  # noqa: E402

TOPICS = ["invoice", "vacation", "laptop", "onboarding", "expense", "security", "backup", "printer", "travel",
          "parking", "payroll", "training", "meeting", "office", "network", "password", "holiday", "contract"]
VERBS = ["requires", "describes", "explains", "limits", "allows", "covers", "changes", "replaces"]


def write_corpus(folder: Path, count: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    for i in range(count):
        topic, other = rnd.sample(TOPICS, 2)
        text = (f"Policy note {i}: the {topic} rule {rnd.choice(VERBS)} the {other} process. "
                f"Reference number {i * 7919 % 100003}. Contact team {rnd.randint(1, 90)} for the {topic} form; "
                f"approval takes {rnd.randint(1, 14)} days and applies to site {rnd.randint(1, 40)}.\n")
        path = folder / f"section-{i // 500:02d}" / f"note-{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sync-"))
    folder, home = workdir / "docs", workdir / "home"
    write_corpus(folder, args.docs)
    service = RagService(load_settings(home=home))
    service.create_kb("bench")
    service.warm_up()

    started = time.perf_counter()
    full = service.sync("bench", folder)
    full_seconds = time.perf_counter() - started

    middle = args.docs // 2
    changed_source = f"section-{middle // 500:02d}/note-{middle:05d}.txt"
    changed = folder / changed_source
    changed.write_text(changed.read_text(encoding="utf-8") + "Amended: the form is now online.\n", encoding="utf-8")
    started = time.perf_counter()
    one = service.sync("bench", folder)
    one_seconds = time.perf_counter() - started

    hits = service.search("bench", "Amended: the form is now online", top_k=1)
    result = {
        "documents": args.docs,
        "full_ingest_seconds": round(full_seconds, 2),
        "full_ingest": {"added": full.added, "chunks": full.chunks},
        "one_file_sync_seconds": round(one_seconds, 3),
        "one_file_sync": {"added": one.added, "updated": one.updated, "unchanged": one.unchanged,
                          "deleted": one.deleted},
        "ratio": round(one_seconds / full_seconds, 5),
        "changed_file_found": bool(hits) and hits[0].source == changed_source,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"full ingest of {args.docs} documents: {full_seconds:.1f} s ({full.chunks} chunks)")
        print(f"sync with one file changed:        {one_seconds:.2f} s "
              f"({one.updated} updated, {one.unchanged} unchanged)")
        print(f"ratio: {100 * result['ratio']:.2f}% (target < 5%)")
    ok = result["ratio"] < 0.05 and one.updated == 1 and one.unchanged == args.docs - 1
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

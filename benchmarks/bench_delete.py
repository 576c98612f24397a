"""Deleting one document over the REST API: a KB of the whole SciFact corpus against a KB of 500 of its documents.

    .venv/bin/python benchmarks/bench_delete.py [--beir ../shared/datasets/scifact] [--small 500]
        [--deletes 7] [--home DIR] [--json]

Starts a real `rag serve` (real models) on a free localhost port. Both KBs are built from the corpus's
abstracts written as Markdown files and uploaded over REST (`POST /api/kbs/KB/documents`, in batches,
each batch a job); with ``--home`` the server's RAG_HOME is kept, so a second run finds both KBs built
and starts measuring at once (the embedding cache also makes the second KB cheap to build).

Each measured delete: pick a document whose own title finds it in a hybrid search's top 10, then time
from sending `DELETE /api/kbs/KB/documents/ID` to the first search (the same title query) that no longer
returns it — what a user sees. The DELETE round-trip alone is printed too. The document is then
uploaded again (not timed), so every delete is from a KB of the same size. Deletes alternate between the
two KBs so that a change in machine load touches both alike. Prints the medians and their ratio
(target: whole corpus ≤ 2 × the 500-document KB).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from api_server import RunningServer, start_server, wait_for_job  # noqa: E402

DEFAULT_BEIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
UPLOAD_BATCH = 250  # files per upload request (one job each)
SEARCH_TOP_K = 10


@dataclass(frozen=True, slots=True)
class Doc:
    name: str  # the uploaded file's name, which becomes its source
    title: str
    body: bytes


@dataclass
class KBRun:
    kb: str
    documents: int = 0
    chunks: int = 0
    build_s: float | None = None  # None: found already built
    gone_s: list[float] = field(default_factory=list)  # DELETE sent → a search no longer returns it
    request_s: list[float] = field(default_factory=list)  # the DELETE round-trip alone
    searches_until_gone: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"kb": self.kb, "documents": self.documents, "chunks": self.chunks,
                "build_s": None if self.build_s is None else round(self.build_s, 1),
                "deletes": len(self.gone_s),
                "gone_median_s": round(statistics.median(self.gone_s), 4),
                "request_median_s": round(statistics.median(self.request_s), 4),
                "gone_s": [round(s, 4) for s in self.gone_s],
                "searches_until_gone": self.searches_until_gone}


def corpus_docs(beir: Path) -> list[Doc]:
    docs = []
    for line in (beir / "corpus.jsonl").open(encoding="utf-8"):
        record = json.loads(line)
        title = (record.get("title") or "").strip()
        docs.append(Doc(f"{record['_id']}.md", title, f"# {title}\n\n{record['text']}\n".encode()))
    return docs


def api(server: RunningServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    response = requests.request(method, f"{server.base_url}{path}", timeout=600, **kwargs)
    if response.status_code >= 400:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
    return response


def upload(server: RunningServer, kb: str, docs: list[Doc]) -> None:
    for start in range(0, len(docs), UPLOAD_BATCH):
        batch = docs[start:start + UPLOAD_BATCH]
        parts = [("files", (doc.name, io.BytesIO(doc.body), "text/markdown")) for doc in batch]
        job_id = api(server, "POST", f"/api/kbs/{kb}/documents", files=parts).json()["job_id"]
        job = wait_for_job(server.base_url, job_id, timeout=3600)
        if job["status"] != "succeeded":
            raise RuntimeError(f"upload job for {kb} ended {job['status']}: {json.dumps(job)[:1000]}")


def documents(server: RunningServer, kb: str) -> dict[str, str]:
    """source → doc_id of the KB's indexed documents."""
    rows = api(server, "GET", f"/api/kbs/{kb}/documents").json()["documents"]
    return {row["source"]: row["doc_id"] for row in rows if row.get("status", "indexed") == "indexed"}


def ensure_kb(server: RunningServer, kb: str, docs: list[Doc], run: KBRun) -> dict[str, str]:
    existing = {row["name"] for row in api(server, "GET", "/api/kbs").json()["kbs"]}
    if kb not in existing:
        api(server, "POST", "/api/kbs", json={"name": kb, "description": "bench_delete"})
    have = documents(server, kb)
    missing = [doc for doc in docs if doc.name not in have]
    if missing:
        started = time.perf_counter()
        upload(server, kb, missing)
        run.build_s = time.perf_counter() - started
        have = documents(server, kb)
    if len(have) != len(docs):
        raise RuntimeError(f"{kb} holds {len(have)} documents, expected {len(docs)}")
    run.documents = len(have)
    info = api(server, "GET", f"/api/kbs/{kb}").json()
    run.chunks = int(info["chunks"])
    return have


def search_ids(server: RunningServer, kb: str, query: str) -> set[str]:
    hits = api(server, "POST", f"/api/kbs/{kb}/search", json={"query": query, "top_k": SEARCH_TOP_K}).json()["hits"]
    return {hit["doc_id"] for hit in hits}


def measure_one(server: RunningServer, kb: str, doc: Doc, doc_id: str, run: KBRun, timeout_s: float = 120) -> None:
    started = time.perf_counter()
    api(server, "DELETE", f"/api/kbs/{kb}/documents/{doc_id}")
    run.request_s.append(time.perf_counter() - started)
    searches = 0
    while True:
        searches += 1
        if doc_id not in search_ids(server, kb, doc.title):
            break
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"{doc.name} still found {timeout_s}s after its DELETE in {kb}")
    run.gone_s.append(time.perf_counter() - started)
    run.searches_until_gone.append(searches)
    upload(server, kb, [doc])  # restore: the next delete is from a KB of the same size


def pick_targets(server: RunningServer, docs: list[Doc], ids: dict[str, dict[str, str]], count: int,
                 seed: int) -> list[Doc]:
    """Documents of the small KB (so in both KBs) whose title finds them in both KBs' top 10."""
    chosen: list[Doc] = []
    candidates = [doc for doc in docs if len(doc.title) >= 30]
    random.Random(seed).shuffle(candidates)
    for doc in candidates:
        if all(kb_ids[doc.name] in search_ids(server, kb, doc.title) for kb, kb_ids in ids.items()):
            chosen.append(doc)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"only {len(chosen)} documents are found by their titles in both KBs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, default=DEFAULT_BEIR)
    parser.add_argument("--small", type=int, default=500, help="documents of the small KB (the corpus's first N)")
    parser.add_argument("--full", type=int, default=None, help="documents of the large KB (default: all)")
    parser.add_argument("--deletes", type=int, default=7, help="measured deletes per KB (the median is reported)")
    parser.add_argument("--home", type=Path, default=None, help="RAG_HOME to keep (and reuse) between runs")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    docs = corpus_docs(args.beir)
    full_docs = docs[: args.full] if args.full else docs
    small_docs = full_docs[: args.small]
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        server = start_server(home, log_dir=home.parent if args.home else Path(tmp))
        try:
            server.wait_ready()
            small = KBRun(f"scifact-{len(small_docs)}")
            full = KBRun(f"scifact-{len(full_docs)}" if args.full else "scifact-all")
            ids = {full.kb: ensure_kb(server, full.kb, full_docs, full),
                   small.kb: ensure_kb(server, small.kb, small_docs, small)}
            targets = pick_targets(server, small_docs, ids, args.deletes, args.seed)
            for doc in targets:
                for run in (small, full):
                    measure_one(server, run.kb, doc, ids[run.kb][doc.name], run)
                    ids[run.kb] = documents(server, run.kb)  # the re-upload may give a new id
        finally:
            server.stop()

    ratio = statistics.median(full.gone_s) / statistics.median(small.gone_s)
    result = {"small": small.summary(), "full": full.summary(), "ratio": round(ratio, 3), "target": 2.0}
    if args.json:
        print(json.dumps(result))
        return
    print("REST delete: DELETE sent → the document's title search no longer returns it (real models, hybrid)")
    for run in (small, full):
        built = "already built" if run.build_s is None else f"built in {run.build_s:.0f} s"
        print(f"{run.kb:14s} {run.documents:5d} docs {run.chunks:6d} chunks ({built})   "
              f"median gone {statistics.median(run.gone_s) * 1000:7.1f} ms   "
              f"median DELETE {statistics.median(run.request_s) * 1000:7.1f} ms   "
              f"all gone: {', '.join(f'{s * 1000:.0f}' for s in run.gone_s)} ms")
    print(f"ratio whole / small  {ratio:.2f}x (target <= 2.0)")


if __name__ == "__main__":
    main()

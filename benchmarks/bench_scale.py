"""How the index engine scales: build, one-document commit and delete, reader refresh, search latency, recall.

    .venv/bin/python benchmarks/bench_scale.py --chunks 10000,100000,1000000 [--json] [--device cpu|cuda]

KBs of N chunks are built directly through the store layer (a real catalog, the local segmented backend),
each N in its own process so that ``rss_mb`` is that N's peak. Text: the SciFact abstracts
(``../shared/datasets/scifact``), cycled, each copy with its own token (``copyC``) so documents differ.
Vectors: the real MiniLM vectors of those abstracts (computed once, cached) plus small Gaussian noise per
copy, renormalised: clustered like real embeddings, but synthetic. Only the MiniLM space is indexed.

``rss_mb``: peak resident memory (VmHWM) of the N's process plus any server child still running (split
into ``rss_bench_mb`` and ``rss_server_mb``); ``rss_now_mb``: the process's resident memory (VmRSS) after
the searches, before the recall reference; per-phase figures go to stderr with --json.
``commit_one_s`` replaces one document and commits; ``delete_one_s`` deletes one and commits;
``refresh_s`` is the reader picking up that commit. Latencies are p50 over SciFact train queries at the
engine's usual depth (200 candidates); ``hybrid_p50_ms`` is a full ``Searcher.search`` with the query's
vector precomputed (its cost is ``embed_query_ms``). ``recall_at_10``: dense top-10 against exact search.
Up to 100k chunks, the old path (one BM25 + flat FAISS index rebuilt over every chunk, written and fsynced)
is timed for one commit too: ``old_commit_one_s`` and ``commit_speedup``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "rag-bench"
NOISE = 0.01  # per dimension; a copy's cosine to its original is about 0.98
KEYS = ["chunks", "build_s", "commit_one_s", "delete_one_s", "refresh_s", "bm25_p50_ms", "dense_p50_ms",
        "hybrid_p50_ms", "embed_query_ms", "recall_at_10", "rss_mb", "rss_bench_mb", "rss_server_mb",
        "rss_now_mb", "segments"]


def peak_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_mb() -> float:
    """This process's resident memory now (VmRSS), in MB: what it holds after a phase, not its peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def passages() -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with (DATASET / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            ids.append(row["_id"])
            texts.append(f"{row['title']}\n{row['text']}".strip())
    return ids, texts


def base_vectors(texts: list[str]) -> np.ndarray:
    path = CACHE / f"scifact-minilm-{len(texts)}.npy"
    if path.exists():
        return np.load(path)
    from rag.embed import load_embedder

    vectors = load_embedder("minilm").embed_documents(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def noisy(base: np.ndarray, copy: int) -> np.ndarray:
    rng = np.random.default_rng(copy)
    vectors = base + rng.normal(scale=NOISE, size=base.shape).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


class PrecomputedQueries:
    """An embedder whose query vectors were computed beforehand with the real model (timed apart)."""

    name = "minilm"
    dim = 384
    multilingual = False

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self._vectors = vectors

    def embed_query(self, text: str) -> np.ndarray:
        return self._vectors[text]

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("the benchmark gives the chunks' vectors to the store")


def run_one(chunks: int, device: str, old_path_limit: int, batch: int,
            backend_name: str = "local", keep: Path | None = None) -> dict[str, float | int]:
    from rag.config import RetrievalSettings
    from rag.embed import EmbeddingRouter, load_embedder
    from rag.retrieve.searcher import Searcher, SearchOptions
    from rag.retrieve.tokenize import default_tokenizer
    from rag.store.bm25_index import BM25Params
    from rag.store.catalog import Catalog, StagedDocument
    from rag.store.local import LocalBackend
    from rag.store.segment import DenseSettings, EmbeddingSpace
    from rag.types import IndexChunk

    doc_ids, texts = passages()
    tokens = [default_tokenizer(t) for t in texts]
    base = base_vectors(texts)
    queries = [json.loads(line)["text"] for line in (DATASET / "queries.jsonl").open(encoding="utf-8")][:100]
    model = load_embedder("minilm")
    started = time.perf_counter()
    query_vectors = {q: model.embed_query(q) for q in queries}
    embed_query_ms = (time.perf_counter() - started) * 1000 / len(queries)
    loaded_mb, loaded_now_mb = peak_mb(), current_mb()

    home = keep / f"{backend_name}-{chunks}" if keep else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    built_record = home / "built.json"
    reused = built_record.exists()
    if keep and not reused:  # a build that did not finish: start again
        shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    try:
        catalog = Catalog(home / "catalog.sqlite")
        if not reused:
            catalog.create_kb("kb")
        router = EmbeddingRouter("minilm", "usem3", cross_language_model=None)
        params = RetrievalSettings()
        bm25 = BM25Params(params.bm25_method, params.bm25_k1, params.bm25_b)
        if backend_name == "milvus":  # Milvus Lite: a database file in the temporary home
            from rag.store.milvus import MilvusBackend

            backend: Any = MilvusBackend(catalog, lambda kb: home / "kbs" / kb, router, bm25,
                                         uri=str(home / "milvus.db"))
        else:
            backend = LocalBackend(catalog, lambda kb: home / "kbs" / kb, router, bm25,
                                   DenseSettings(), background_merge=False, device=device)

        def item(copy: int, i: int, vector: np.ndarray) -> tuple[StagedDocument, list[IndexChunk]]:
            chunk = IndexChunk(0, f"{texts[i]} copy{copy}", None, None, "en", f"{copy}:{doc_ids[i]}",
                               tokens[i] + [f"copy{copy}"], {"minilm": vector})
            document = StagedDocument(doc_id=f"c{copy}-{doc_ids[i]}", source=f"c{copy}/{doc_ids[i]}.txt",
                                      path=None, format="txt", content_hash=f"{copy}", size=1, title=None,
                                      chunk_count=1)
            return document, [chunk]

        def stage(writer: object, copy: int, i: int, vector: np.ndarray) -> None:
            writer.stage(*item(copy, i, vector))  # type: ignore[attr-defined]

        started = time.perf_counter()
        made = chunks if reused else 0
        while made < chunks:
            with backend.writer("kb") as writer:
                end = min(chunks, made + batch)
                while made < end:
                    copy, first = divmod(made, len(texts))
                    vectors = noisy(base, copy)
                    stop = min(len(texts), first + end - made)
                    for at in range(first, stop, 256):  # staged as the indexer does, a batch at a time
                        writer.stage_many([item(copy, i, vectors[i]) for i in range(at, min(stop, at + 256))])
                    made += stop - first
                writer.commit()
        build_s = time.perf_counter() - started
        if reused:  # built by an earlier run with --home: its build time, this process's memory
            build_s = json.loads(built_record.read_text())["build_s"]
        elif keep:
            built_record.write_text(json.dumps({"build_s": build_s}))
        phases = {"models_loaded": loaded_mb}
        resident = {"models_loaded": loaded_now_mb}
        server_phases: dict[str, float] = {}  # the same for the Milvus Lite server child
        phases["built"] = peak_mb()
        resident["built"] = current_mb()
        server_phases["built"] = round(server_peak_mb(), 1)
        reader = backend.reader("kb")

        # One document replaced, then one deleted, each in its own commit; then the reader's refresh.
        timings = []
        for trial in range(3):
            with backend.writer("kb") as writer:
                started = time.perf_counter()
                stage(writer, 10_000 + trial, trial, noisy(base[trial : trial + 1], 10_000 + trial)[0])
                writer.commit()
                timings.append(time.perf_counter() - started)
        commit_one_s = float(np.median(timings))
        started = time.perf_counter()
        reader = backend.reader("kb")
        refresh_s = time.perf_counter() - started
        with backend.writer("kb") as writer:
            started = time.perf_counter()
            writer.delete(f"c0-{doc_ids[7]}")
            writer.commit()
            delete_one_s = time.perf_counter() - started
        reader = backend.reader("kb")
        phases["committed"] = peak_mb()
        resident["committed"] = current_mb()
        server_phases["committed"] = round(server_peak_mb(), 1)

        space = EmbeddingSpace("minilm", "en")
        query_tokens = [default_tokenizer(q) for q in queries]

        def p50(run: object) -> float:
            times = []
            for i, query in enumerate(queries):
                begun = time.perf_counter()
                run(i, query)  # type: ignore[operator]
                times.append((time.perf_counter() - begun) * 1000)
            return float(np.percentile(times, 50))

        depth = params.candidates
        bm25_p50 = p50(lambda i, q: reader.bm25_top_k(query_tokens[i], depth))
        dense_p50 = p50(lambda i, q: reader.dense_top_k(space, query_vectors[q], depth,
                                                       params.dense_document_weight))
        router.embedder = lambda name: PrecomputedQueries(query_vectors)  # type: ignore[method-assign]
        searcher = Searcher(backend, router, params)
        hybrid_p50 = p50(lambda i, q: searcher.search("kb", q, SearchOptions(top_k=10)))

        phases["searched"] = peak_mb()
        resident["searched"] = current_mb()
        server_phases["searched"] = round(server_peak_mb(), 1)
        if backend_name == "milvus":
            recall = milvus_recall(backend.store, reader, space, [query_vectors[q] for q in queries])
        else:
            recall = dense_recall(reader, space, [query_vectors[q] for q in queries])
        phases["recall_reference"] = peak_mb()
        resident["recall_reference"] = current_mb()
        server_phases["recall_reference"] = round(server_peak_mb(), 1)
        bench_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        server_mb = server_peak_mb()
        result: dict[str, float | int] = {
            "chunks": chunks, "build_s": round(build_s, 2), "commit_one_s": round(commit_one_s, 4),
            "delete_one_s": round(delete_one_s, 4), "refresh_s": round(refresh_s, 4),
            "bm25_p50_ms": round(bm25_p50, 2), "dense_p50_ms": round(dense_p50, 2),
            "hybrid_p50_ms": round(hybrid_p50, 2), "embed_query_ms": round(embed_query_ms, 2),
            "recall_at_10": round(recall, 4),
            # Peak resident MB of this process and of its running children, apart and summed (the peaks need not
            # coincide: an upper bound). milvus-lite before 3.0 ran its server as a child; 3.x runs in this
            # process (server 0). rss_now_mb: what this process holds after the searches, build transients gone.
            "rss_mb": round(bench_mb + server_mb, 1),
            "rss_bench_mb": round(bench_mb, 1),
            "rss_server_mb": round(server_mb, 1),
            "segments": len(getattr(reader, "segments", [None])),  # Milvus: one index to its readers
            "peak_mb_after": phases,
            "server_peak_mb_after": server_phases,
            "resident_mb_after": resident,
            "rss_now_mb": resident["searched"],
            "backend": backend_name,
            "reused_build": reused,
        }
        if chunks <= old_path_limit and backend_name == "local":
            scratch = Path(tempfile.mkdtemp(prefix="bench-scale-old-"))
            old = old_commit(tokens, base, texts, chunks, scratch / "old")
            shutil.rmtree(scratch, ignore_errors=True)
            result["old_commit_one_s"] = round(old, 3)
            result["commit_speedup"] = round(old / max(commit_one_s, 1e-9), 1)
        catalog.close()
        return result
    finally:
        if not keep:
            if backend_name == "milvus":  # stopped first: at exit it would write its files back into ``home``
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(home / "milvus.db"))
            shutil.rmtree(home, ignore_errors=True)


def server_peak_mb() -> float:
    """Peak resident memory of this process's children still running (the Milvus Lite server), in MB."""
    total = 0.0
    for child in Path("/proc").glob("[0-9]*"):
        try:
            status = (child / "status").read_text(encoding="utf-8")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and "VmHWM" in fields:
            total += int(fields["VmHWM"].split()[0]) / 1024
    return total


def milvus_recall(store: Any, reader: Any, space: Any, queries: list[np.ndarray]) -> float:
    """``dense_recall`` for Milvus: the exact top-10 over every live vector, read back from the collection."""
    from rag.store.milvus_schema import visible

    collection = store.dense(space.model)
    # Read back a batch at a time into float32 blocks: a list of every row's vector as Python floats would
    # hold about 12 KB a row in this process and inflate rss_bench_mb with the reference, not the engine.
    iterator = store.client.query_iterator(collection, batch_size=4_000, filter=visible("kb", reader.generation),
                                           output_fields=["id", "vector"])
    id_blocks, vector_blocks = [], []
    try:
        while batch := iterator.next():
            id_blocks.append(np.asarray([row["id"] for row in batch], dtype=np.int64))
            vector_blocks.append(np.asarray([row["vector"] for row in batch], dtype=np.float32))
    finally:
        iterator.close()
    ids, matrix = np.concatenate(id_blocks), np.concatenate(vector_blocks)
    found = 0
    for query in queries:
        exact = set(ids[np.argsort(-(matrix @ query))[:10]].tolist())
        found += len(exact & set(reader.dense_top_k(space, query, 10)[0].tolist()))
    return found / (10 * len(queries))


def dense_recall(reader: object, space: object, queries: list[np.ndarray]) -> float:
    """Share of the exact top-10 (brute force over every live vector) that the engine's dense search returns."""
    from rag.store.segment import release_pages

    matrix = np.stack(queries)
    best_scores = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 10), dtype=np.int64)
    for live in reader.segments:  # type: ignore[attr-defined]
        dense = live.segment.dense.get(space)
        if dense is None:
            continue
        dead = set(live.dead_rows.tolist())
        for start in range(0, len(dense.rows), 50_000):
            block = np.asarray(dense.vectors[start : start + 50_000])
            rows = np.asarray(dense.rows[start : start + 50_000])
            scores = matrix @ block.T
            if dead:
                scores[:, [j for j, r in enumerate(rows) if int(r) in dead]] = -np.inf
            ids = np.asarray(live.segment.ids)[rows]
            both_scores = np.concatenate([best_scores, scores], axis=1)
            both_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
            top = np.argsort(-both_scores, axis=1)[:, :10]
            best_scores = np.take_along_axis(both_scores, top, axis=1)
            best_ids = np.take_along_axis(both_ids, top, axis=1)
        # The reference search read every vector of the segment; drop those pages from this process's
        # resident set, so that rss_mb measures the engine, not the brute-force reference.
        release_pages(dense.vectors)
    found = 0
    for i, query in enumerate(queries):
        got = set(reader.dense_top_k(space, query, 10)[0].tolist())  # type: ignore[attr-defined]
        found += len(got & set(best_ids[i].tolist()))
    return found / (10 * len(queries))


def old_commit(tokens: list[list[str]], base: np.ndarray, texts: list[str], chunks: int, folder: Path) -> float:
    """The previous engine's commit: BM25 (bm25s) and a flat FAISS index rebuilt over all chunks, saved, fsynced."""
    from rag.store.bm25_index import BM25Index
    from rag.store.dense_index import DenseIndex
    from rag.store.segment import fsync_path

    ids = list(range(chunks))
    token_lists, vectors = [], []
    for copy in range(chunks // len(texts) + 1):
        vectors.append(noisy(base, copy))
        token_lists.extend(t + [f"copy{copy}"] for t in tokens)
    matrix = np.concatenate(vectors)[:chunks]
    token_lists = token_lists[:chunks]
    started = time.perf_counter()
    bm25 = BM25Index.build(ids, token_lists)
    dense = DenseIndex.build(matrix.shape[1], np.asarray(ids), matrix, [str(i) for i in ids])
    folder.mkdir(parents=True)
    bm25.save(folder / "bm25")
    dense.save(folder / "dense.faiss")
    for path in folder.rglob("*"):
        fsync_path(path)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", default="10000,100000", help="comma-separated KB sizes")
    parser.add_argument("--backend", default="local",
                        help="local, milvus (Milvus Lite), or local,milvus: both, side by side in one run")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", action="store_true", help="one JSON object per N")
    parser.add_argument("--old-path-limit", type=int, default=100_000,
                        help="largest N for which the old full-rebuild commit is timed too")
    parser.add_argument("--batch", type=int, default=125_000, help="chunks per commit while building")
    parser.add_argument("--home", type=Path, help="keep each built KB in this folder and reuse it on the next run "
                        "(build_s is then the first run's; rss_mb is this run's process, which did not build)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = args.backend.split(",")
    if not set(backends) <= {"local", "milvus"}:
        parser.error("--backend: local, milvus or local,milvus")
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.device, args.old_path_limit, args.batch, backends[0], args.home)))
        return
    if not args.json:
        print("text: SciFact abstracts cycled with a per-copy token; vectors: real MiniLM vectors of the corpus "
              f"plus Gaussian noise (sigma {NOISE}/dim), synthetic; {args.backend} backend on {args.device}")
    for n, name in ((int(x), name) for x in args.chunks.split(",") for name in backends):
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--device", args.device,
                               "--old-path-limit", str(args.old_path_limit), "--batch", str(args.batch),
                               "--backend", name, *(["--home", str(args.home)] if args.home else [])],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"N={n} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if args.json:
            print(json.dumps({key: result[key] for key in KEYS} | {"backend": result["backend"]}), flush=True)
            print(f"N={n}: peak resident MB after each phase {result['peak_mb_after']}", file=sys.stderr, flush=True)
            print(f"N={n}: resident MB now (VmRSS) after each phase {result['resident_mb_after']}", file=sys.stderr,
                  flush=True)
            if result["backend"] == "milvus":
                print(f"N={n}: Milvus Lite server's peak resident MB after each phase "
                      f"{result['server_peak_mb_after']}", file=sys.stderr, flush=True)
            if "old_commit_one_s" in result:
                print(f"N={n}: old full-rebuild commit {result['old_commit_one_s']} s, "
                      f"{result['commit_speedup']}x the segmented commit", file=sys.stderr, flush=True)
        else:
            print("  ".join(f"{key}={result[key]}" for key in KEYS + [k for k in result if k not in KEYS]),
                  flush=True)


if __name__ == "__main__":
    main()

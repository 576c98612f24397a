"""Index snapshots: one immutable folder per committed generation of a KB.

``kbs/<kb>/gen-<N>/`` holds the BM25 index and one FAISS index per embedding model, all derived from the
catalog's chunks visible at generation N. A folder is written under a temporary name, synced to disk and
renamed into place before the catalog's generation flips, so a reader never sees a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.embed import EmbeddingRouter
from rag.store.bm25_index import BM25Index, BM25Params
from rag.store.catalog import Catalog
from rag.store.dense_index import DenseIndex


@dataclass(slots=True)
class Snapshot:
    generation: int
    bm25: BM25Index
    dense: dict[str, DenseIndex] = field(default_factory=dict)

    @classmethod
    def empty(cls, generation: int = 0) -> Snapshot:
        return cls(generation, BM25Index.build([], []))


def snapshot_dir(kb_dir: Path, generation: int) -> Path:
    return kb_dir / f"gen-{generation:08d}"


def build_snapshot(
    catalog: Catalog,
    kb: str,
    generation: int,
    kb_dir: Path,
    router: EmbeddingRouter,
    bm25: BM25Params,
) -> Snapshot:
    ids: list[int] = []
    token_lists: list[list[str]] = []
    by_model: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for row in catalog.visible_chunks(kb, generation):
        ids.append(row["id"])
        token_lists.append(row["tokens"].split(" ") if row["tokens"] else [])
        by_model[router.model_for_language(row["language"])].append((row["id"], row["text_hash"], row["doc_id"]))
    snapshot = Snapshot(generation, BM25Index.build(ids, token_lists, bm25))
    for model, entries in by_model.items():
        vectors = catalog.cached_embeddings(model, list({h for _, h, _ in entries}))
        missing = {h for _, h, _ in entries if h not in vectors}
        if missing:  # the embedding model was changed in the settings since these chunks were written
            router.ensure(catalog, catalog.chunk_texts_by_hash(kb, missing))
            vectors = catalog.cached_embeddings(model, list({h for _, h, _ in entries}))
        chunk_ids = np.fromiter((i for i, _, _ in entries), dtype=np.int64, count=len(entries))
        matrix = np.stack([vectors[h] for _, h, _ in entries])
        snapshot.dense[model] = DenseIndex.build(matrix.shape[1], chunk_ids, matrix, [d for _, _, d in entries])
    _write(snapshot, snapshot_dir(kb_dir, generation))
    return snapshot


def _write(snapshot: Snapshot, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    snapshot.bm25.save(tmp / "bm25")
    for model, index in snapshot.dense.items():
        index.save(tmp / f"dense-{_safe(model)}.faiss")
    manifest = {"generation": snapshot.generation, "dense": {m: f"dense-{_safe(m)}.faiss" for m in snapshot.dense}}
    (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    # On disk before the rename, and the rename on disk before the catalog's generation flips: after a
    # power cut, a snapshot folder under its final name is whole.
    for path in tmp.rglob("*"):
        if path.is_file():
            _fsync(path)
    _fsync(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    _fsync(target.parent)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_snapshot(kb_dir: Path, generation: int) -> Snapshot | None:
    folder = snapshot_dir(kb_dir, generation)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    snapshot = Snapshot(generation, BM25Index.load(folder / "bm25"))
    for model, filename in manifest["dense"].items():
        snapshot.dense[model] = DenseIndex.load(folder / filename)
    return snapshot


def remove_stale(kb_dir: Path, keep_from: int, keep_to: int) -> None:
    """Delete snapshot folders outside [keep_from, keep_to] and leftovers of interrupted writes."""
    if not kb_dir.exists():
        return
    for folder in kb_dir.glob("gen-*"):
        name = folder.name.removesuffix(".tmp")
        try:
            generation = int(name.split("-", 1)[1])
        except ValueError:
            continue
        if folder.name.endswith(".tmp") or not keep_from <= generation <= keep_to:
            shutil.rmtree(folder, ignore_errors=True)


def _safe(model: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model)

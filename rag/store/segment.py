"""One immutable index segment: the chunks of one commit (or of one merge), BM25 postings and dense vectors.

A segment folder ``segments/seg-<N>/`` holds, with rows in ascending chunk-id order:

- ``ids.npy`` (int64), ``doc_len.npy`` (float32, BM25 tokens per chunk), ``doc_of_row.npy`` (int32, the row
  of the chunk's document in every ``docvec.npy``);
- BM25 term frequencies twice, as sparse arrays: by term (``post_ptr``, ``post_rows``, ``post_tf``: what a
  query reads) and by row (``row_ptr``, ``row_terms``: which terms a deleted chunk takes out of the KB-wide
  document frequencies), and ``vocab.json`` (term id → term);
- ``docs.json``: the document id of each document row (segments written before it existed lack it: their
  document ids are then read from the catalog when a search is restricted to some documents);
- per embedding space ``dense-<space>/``: ``vectors.npy`` (float32, L2-normalised), ``docvec.npy`` (the
  normalised mean vector of each document's chunks) and, for large segments, ``ann.faiss`` (IVF or HNSW).

Everything is written under ``seg-<N>.tmp``, fsynced and renamed; after that nothing in it ever changes.
Deletes are not in the segment: the manifest names a tombstone file of chunk ids per segment.
Loading memory-maps the arrays (``np.load(mmap_mode="r")``) and the FAISS index (``IO_FLAG_MMAP``), so
processes on one machine share the page cache and a loaded segment costs little private memory.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

DenseKind = Literal["auto", "flat", "hnsw", "ivf"]
# A search restricted to at most this many vectors of a segment reads them all (exact, a few ms) instead
# of asking the ANN index, whose probed lists may hold too few of them for a full top-k.
EXACT_FILTERED_ROWS = 20_000


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    """Vectors of one embedding model over chunks of one language (e.g. minilm over English chunks)."""

    model: str
    language: str

    @property
    def key(self) -> str:
        return f"{self.model}@{self.language}"

    @property
    def folder(self) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.model)
        return f"dense-{safe}@{self.language}"

    @classmethod
    def parse(cls, key: str) -> EmbeddingSpace:
        model, _, language = key.rpartition("@")
        return cls(model, language)


@dataclass(frozen=True, slots=True)
class DenseSettings:
    """How a segment's dense vectors are indexed. ``auto``: exact below ``ann_min_rows``, IVF above."""

    kind: DenseKind = "auto"
    ann_min_rows: int = 50_000
    ivf_nprobe: int = 32
    hnsw_ef_search: int = 128

    def ann_kind(self, rows: int) -> Literal["flat", "hnsw", "ivf"]:
        if self.kind == "auto":
            return "ivf" if rows >= self.ann_min_rows else "flat"
        return self.kind


@dataclass(slots=True)
class SegmentData:
    """What a segment is built from: rows already in ascending chunk-id order."""

    ids: np.ndarray  # int64
    doc_of_row: np.ndarray  # int32, a document's rows share a value; values 0..documents-1
    tokens: list[list[str]] | None = None  # BM25 tokens per row (or the postings below, from a merge)
    postings: tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    vectors: dict[EmbeddingSpace, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # space → (rows that have a vector in this space, ascending; their vectors)
    doc_keys: list[str] | None = None  # the document id of each value of doc_of_row


def write_segment(folder: Path, data: SegmentData, dense: DenseSettings) -> None:
    """Write a segment under ``folder``.tmp, fsync every file, rename it into place, fsync the parent."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = len(data.ids)
    if data.postings is not None:
        vocab, terms, row_of, tf, doc_len = data.postings
        by_row = np.argsort(row_of.astype(np.int64) * max(len(vocab), 1) + terms, kind="stable")
        terms, row_of, tf = terms[by_row], row_of[by_row], tf[by_row]
    else:
        assert data.tokens is not None
        vocab, terms, row_of, tf, doc_len = _postings_from_tokens(data.tokens)  # ordered by row, then term
    _save(tmp / "ids.npy", np.asarray(data.ids, dtype=np.int64))
    _save(tmp / "doc_of_row.npy", np.asarray(data.doc_of_row, dtype=np.int32))
    _save(tmp / "doc_len.npy", np.asarray(doc_len, dtype=np.float32))
    # By term: the postings a query reads. By row: the terms a tombstoned chunk takes out of the df.
    by_term = np.argsort(terms, kind="stable")  # rows stay ascending within a term
    _save(tmp / "post_ptr.npy", _pointers(terms, len(vocab)))
    _save(tmp / "post_rows.npy", row_of[by_term].astype(np.int32))
    _save(tmp / "post_tf.npy", tf[by_term].astype(np.uint16))
    del by_term
    _save(tmp / "row_ptr.npy", _pointers(row_of, rows))
    _save(tmp / "row_terms.npy", terms.astype(np.int32))
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    if data.doc_keys is not None:
        (tmp / "docs.json").write_text(json.dumps(data.doc_keys, ensure_ascii=False), encoding="utf-8")
    documents = int(data.doc_of_row.max()) + 1 if rows else 0
    meta: dict[str, object] = {"rows": rows, "documents": documents, "dense": {}}
    for space, (space_rows, vectors) in data.vectors.items():
        sub = tmp / space.folder
        sub.mkdir()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        _save(sub / "rows.npy", np.asarray(space_rows, dtype=np.int32))
        _save(sub / "vectors.npy", vectors)
        _save(sub / "docvec.npy", _document_vectors(data.doc_of_row[space_rows], vectors, documents))
        kind = dense.ann_kind(len(space_rows))
        if kind != "flat" and len(space_rows):
            faiss.write_index(_build_ann(kind, vectors), str(sub / "ann.faiss"))
        meta["dense"][space.key] = {"folder": space.folder, "kind": kind if len(space_rows) else "flat",  # type: ignore[index]
                                    "rows": len(space_rows), "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0}
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    for path in tmp.rglob("*"):
        fsync_path(path)
    fsync_path(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    fsync_path(folder.parent)


def _postings_from_tokens(
    token_lists: list[list[str]],
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vocab, term id, row, tf, doc_len): one triple per distinct (row, term), ordered by row then term.

    Vectorised: the tokens are mapped to term ids in one C-level pass (``map`` over a dict), and the
    (row, term) pairs counted with one sort of int64 keys; no Python loop per token.
    """
    rows_total = len(token_lists)
    doc_len = np.fromiter(map(len, token_lists), dtype=np.int64, count=rows_total)
    vocab = sorted(set(chain.from_iterable(token_lists)))
    if not vocab:
        empty = np.empty(0, dtype=np.int32)
        return [], empty, empty, np.empty(0, dtype=np.uint16), doc_len.astype(np.float32)
    term_of = {term: i for i, term in enumerate(vocab)}
    tokens = int(doc_len.sum())
    # One int64 key per token, row × |vocab| + term (the int32 term ids added in place: peak ~12 bytes a token).
    keys = np.repeat(np.arange(rows_total, dtype=np.int64) * len(vocab), doc_len)
    keys += np.fromiter(map(term_of.__getitem__, chain.from_iterable(token_lists)), dtype=np.int32, count=tokens)
    keys.sort()
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    distinct = keys[starts]
    del keys
    row_of, term = np.divmod(distinct, len(vocab))
    return (vocab, term.astype(np.int32), row_of.astype(np.int32),
            np.minimum(counts, 65535).astype(np.uint16), doc_len.astype(np.float32))


def _pointers(keys: np.ndarray, size: int) -> np.ndarray:
    pointers = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=size), out=pointers[1:])
    return pointers


def _document_vectors(doc_rows: np.ndarray, vectors: np.ndarray, documents: int) -> np.ndarray:
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    sums = np.zeros((documents, dim), dtype=np.float32)
    if len(doc_rows):
        np.add.at(sums, doc_rows, vectors)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return sums


def _build_ann(kind: str, vectors: np.ndarray) -> faiss.Index:
    n, dim = vectors.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.add(vectors)
        return index
    # IVF: about 4·√n lists, trained on a sample (k-means needs ~40 points per list, not all of them).
    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = vectors
    if n > nlist * 40:
        sample = vectors[np.sort(np.random.default_rng(0).choice(n, nlist * 40, replace=False))]
    index.train(np.ascontiguousarray(sample))
    for start in range(0, n, 100_000):
        index.add(vectors[start : start + 100_000])
    return index


def _save(path: Path, array: np.ndarray) -> None:
    np.save(path, array, allow_pickle=False)


# np.load parses each .npy header with ast.literal_eval, and CPython 3.11's AST constructor is not safe
# to run in two threads at once ("SystemError: AST constructor recursion depth mismatch", seen with a
# background merge loading segments while a commit read segment ids, and while pytest formatted a
# traceback). So the store reads the headers of its own files without ``ast``; a header it does not
# recognise falls back to ``np.load`` under ``NPY_LOCK``.
NPY_LOCK = threading.Lock()
_DESCR = re.compile(r"'descr':\s*'([<>|=]?[a-zA-Z]\d*)'")
_ORDER = re.compile(r"'fortran_order':\s*(True|False)")
_SHAPE = re.compile(r"'shape':\s*\(([\d,\s]*)\)")


def _npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...], bool, int] | None:
    """(dtype, shape, fortran order, data offset) of a plain .npy file, or None for anything else."""
    with path.open("rb") as handle:
        major, _ = np.lib.format.read_magic(handle)
        size_bytes = 2 if major == 1 else 4
        length = int.from_bytes(handle.read(size_bytes), "little")
        header = handle.read(length).decode("latin1")
        offset = handle.tell()
    descr, order, shape = _DESCR.search(header), _ORDER.search(header), _SHAPE.search(header)
    if not (descr and order and shape):
        return None
    dims = tuple(int(part) for part in shape.group(1).split(",") if part.strip())
    return np.dtype(descr.group(1)), dims, order.group(1) == "True", offset


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """The array in a .npy file (never a pickle), memory-mapped read-only with ``mmap``."""
    found = _npy_header(path)
    if found is None:
        with NPY_LOCK:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    dtype, shape, fortran, offset = found
    order = "F" if fortran else "C"
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        return np.empty(shape, dtype=dtype, order=order)
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order=order)
    flat = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order=order)


def mapped(path: Path) -> np.ndarray:
    """The array in ``path``, memory-mapped read-only, as a plain ndarray view (``np.memmap`` slicing costs
    tens of microseconds a call in Python-level bookkeeping; the view's base keeps the mapping alive)."""
    return np.asarray(load_npy(path, mmap=True))


def release_pages(array: np.ndarray) -> None:
    """Drop the resident pages of a memory-mapped array from this process (they stay in the page cache)."""
    base: object = array
    while base is not None and not hasattr(base, "_mmap"):
        base = getattr(base, "base", None)
    found = getattr(base, "_mmap", None)
    if found is not None:
        found.madvise(mmap.MADV_DONTNEED)


def fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _no_prefetch_threads(index: faiss.Index) -> None:
    """A memory-mapped IVF index reads its lists through ``OnDiskInvertedLists``, which by default starts
    32 prefetch threads on every search: 7 ms per query on 125k vectors instead of 0.3 ms. The lists are
    already mapped, so the kernel's page cache is the prefetch."""
    invlists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    if hasattr(invlists, "prefetch_nthread"):
        invlists.prefetch_nthread = 0


class DenseSpace:
    """A segment's vectors of one embedding space, searched exactly or through its ANN index."""

    def __init__(self, folder: Path, kind: str, settings: DenseSettings, gpu: object | None = None) -> None:
        self.rows = mapped(folder / "rows.npy")
        self.vectors = mapped(folder / "vectors.npy")
        self.docvec = mapped(folder / "docvec.npy")
        self.kind = kind
        self._settings = settings
        self._shared_documents: np.ndarray | None = None
        self.ann: faiss.Index | None = None
        if kind != "flat":
            self.ann = faiss.read_index(str(folder / "ann.faiss"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            if kind == "ivf":
                _no_prefetch_threads(self.ann)
            if gpu is not None and kind == "ivf":
                self.ann = faiss.index_cpu_to_gpu(gpu, 0, self.ann)

    def __len__(self) -> int:
        return len(self.rows)

    def shared_documents(self, doc_of_row: np.ndarray) -> np.ndarray:
        """Per document of the segment: whether it has more than one chunk in this space. A document
        with one chunk has that chunk's own vector as its document vector, so blending needs no read of
        ``docvec`` for it (at a million single-chunk documents that read alone kept 1.5 GB resident)."""
        if self._shared_documents is None:
            counts = np.bincount(np.asarray(doc_of_row)[np.asarray(self.rows)], minlength=len(self.docvec))
            self._shared_documents = counts > 1
        return self._shared_documents

    def positions_of(self, rows: np.ndarray) -> np.ndarray:
        """Positions in this space of those segment ``rows`` (sorted) that have a vector here."""
        if not len(self.rows) or not len(rows):
            return np.empty(0, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
        return at[np.asarray(self.rows[at]) == rows].astype(np.int64)

    def search(self, query: np.ndarray, k: int, dead_positions: np.ndarray | None,
               selector: faiss.IDSelector | None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions in this space, cosine scores) among live positions, best first.

        ``allowed`` (sorted live positions) restricts the candidates: a small set is searched exactly
        (its vectors gathered), a large one through the ANN index with a bitmap ID selector.
        """
        n = len(self.rows)
        k = min(k, n if allowed is None else len(allowed))
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if allowed is not None:
            return self._search_allowed(query, k, allowed)
        if self.ann is None:
            scores = np.asarray(self.vectors @ query, dtype=np.float32)
            if dead_positions is not None and len(dead_positions):
                scores[dead_positions] = -np.inf
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
            top = top[np.isfinite(scores[top])]
            return top.astype(np.int64), scores[top]
        params: faiss.SearchParameters
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=self._settings.ivf_nprobe)
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(self._settings.hnsw_ef_search, k))
        if selector is not None:
            params.sel = selector
        scores, positions = self.ann.search(query.reshape(1, -1), k, params=params)
        keep = positions[0] >= 0
        return positions[0][keep].astype(np.int64), scores[0][keep]

    def _search_allowed(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.rows)
        if self.ann is None or len(allowed) <= EXACT_FILTERED_ROWS:
            scores = np.asarray(self.vectors[allowed] @ query, dtype=np.float32)
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            return allowed[top].astype(np.int64), scores[top]
        bitmap = np.zeros((n + 7) // 8, dtype=np.uint8)
        np.bitwise_or.at(bitmap, allowed >> 3, (1 << (allowed & 7)).astype(np.uint8))
        selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        params: faiss.SearchParameters
        if self.kind == "ivf":
            # Fewer candidates pass the selector in each list: probe more lists (at most 16×).
            share = len(allowed) / n
            boost = int(min(16, max(1, np.ceil(0.05 / share))))
            params = faiss.SearchParametersIVF(nprobe=self._settings.ivf_nprobe * boost, sel=selector)
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(self._settings.hnsw_ef_search, k), sel=selector)
        assert self.ann is not None
        scores, positions = self.ann.search(query.reshape(1, -1), k, params=params)
        keep = positions[0] >= 0
        return positions[0][keep].astype(np.int64), scores[0][keep]


class Segment:
    """A loaded (memory-mapped) segment; immutable, shared by every reader that lists it."""

    def __init__(self, folder: Path, dense: DenseSettings, gpu: object | None = None) -> None:
        self.name = folder.name
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.ids = mapped(folder / "ids.npy")
        self.doc_of_row = mapped(folder / "doc_of_row.npy")
        self.doc_len = mapped(folder / "doc_len.npy")
        self.post_ptr = mapped(folder / "post_ptr.npy")
        self.post_rows = mapped(folder / "post_rows.npy")
        self.post_tf = mapped(folder / "post_tf.npy")
        self.row_ptr = mapped(folder / "row_ptr.npy")
        self.row_terms = mapped(folder / "row_terms.npy")
        vocab: list[str] = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        self.vocab = vocab
        self.term_ids = {term: i for i, term in enumerate(vocab)}
        self.df = np.diff(self.post_ptr)
        self.total_len = float(np.sum(self.doc_len, dtype=np.float64))
        self.documents = int(meta["documents"])
        docs = folder / "docs.json"
        self.doc_keys: list[str] | None = (json.loads(docs.read_text(encoding="utf-8")) if docs.exists()
                                           else None)
        self._doc_index: tuple[dict[str, list[int]], np.ndarray, np.ndarray] | None = None
        self._doc_lock = threading.Lock()
        self.dense = {EmbeddingSpace.parse(key): DenseSpace(folder / info["folder"], info["kind"], dense, gpu)
                      for key, info in meta["dense"].items()}

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Rows of those ``chunk_ids`` that are in this segment."""
        if not len(self.ids) or not len(chunk_ids):
            return np.empty(0, dtype=np.int64)
        positions = np.searchsorted(self.ids, chunk_ids)
        positions = np.minimum(positions, len(self.ids) - 1)
        return positions[self.ids[positions] == chunk_ids].astype(np.int64)

    def rows_of_documents(self, doc_ids: frozenset[str]) -> np.ndarray:
        """Sorted rows of the chunks of those documents (``doc_keys`` must be known)."""
        with self._doc_lock:
            if self._doc_index is None:
                assert self.doc_keys is not None
                order = np.argsort(np.asarray(self.doc_of_row), kind="stable")
                pointers = np.zeros(len(self.doc_keys) + 1, dtype=np.int64)
                np.cumsum(np.bincount(np.asarray(self.doc_of_row), minlength=len(self.doc_keys)), out=pointers[1:])
                positions: dict[str, list[int]] = {}
                for i, key in enumerate(self.doc_keys):
                    positions.setdefault(key, []).append(i)
                self._doc_index = (positions, order, pointers)
        positions, order, pointers = self._doc_index
        found = [i for d in doc_ids for i in positions.get(d, ())]
        if not found:
            return np.empty(0, dtype=np.int64)
        parts = [order[pointers[i] : pointers[i + 1]] for i in found]
        return np.sort(np.concatenate(parts)).astype(np.int64)

    def terms_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """The distinct term ids of each row in ``rows``, concatenated."""
        if not len(rows):
            return np.empty(0, dtype=np.int64)
        parts = [self.row_terms[self.row_ptr[r] : self.row_ptr[r + 1]] for r in rows]
        return np.concatenate(parts).astype(np.int64)

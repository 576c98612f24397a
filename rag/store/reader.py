"""Readers of the local segmented index: the segments of one committed generation, searched together.

A refresh reads the catalog's generation and that generation's manifest (a few hundred bytes). Segments
already loaded are kept; only new segments are loaded (memory-mapped) and only changed tombstone files
are read, so a refresh after a small commit costs milliseconds whatever the size of the KB.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from rag.errors import RagError
from rag.store.bm25_index import BM25Params, idf
from rag.store.catalog import Catalog, ChunkRow
from rag.store.manifest import KBFiles, Manifest, SegmentEntry
from rag.store.segment import DenseSettings, EmbeddingSpace, Segment


class IndexMissing(RagError):
    code = "index_missing"
    http_status = 503


@dataclass(slots=True)
class LiveSegment:
    """A segment as one generation sees it: the segment plus its tombstones."""

    segment: Segment
    deletes: str | None
    dead_rows: np.ndarray  # sorted rows of deleted chunks
    deleted_df: np.ndarray | None  # per term of the segment's vocab: how many dead rows contain it
    deleted_len: float
    dead_positions: dict[EmbeddingSpace, np.ndarray]
    selectors: dict[EmbeddingSpace, faiss.IDSelector]

    @property
    def live(self) -> int:
        return len(self.segment) - len(self.dead_rows)

    @classmethod
    def open(cls, segment: Segment, entry: SegmentEntry, files: KBFiles) -> LiveSegment:
        dead_ids = files.read_deletes(entry.deletes)
        dead_rows = np.sort(segment.rows_of(dead_ids))
        deleted_df = None
        deleted_len = 0.0
        positions: dict[EmbeddingSpace, np.ndarray] = {}
        selectors: dict[EmbeddingSpace, faiss.IDSelector] = {}
        if len(dead_rows):
            deleted_df = np.bincount(segment.terms_of_rows(dead_rows), minlength=len(segment.vocab))
            deleted_len = float(np.sum(segment.doc_len[dead_rows], dtype=np.float64))
            for space, dense in segment.dense.items():
                at = np.searchsorted(dense.rows, dead_rows)
                inside = at < len(dense.rows)
                at, rows = at[inside], dead_rows[inside]
                at = at[np.asarray(dense.rows[at]) == rows]
                positions[space] = at.astype(np.int64)
                if dense.ann is not None and len(at):
                    batch = faiss.IDSelectorBatch(len(at), faiss.swig_ptr(positions[space]))
                    selector = faiss.IDSelectorNot(batch)
                    selector.referenced = batch  # type: ignore[attr-defined]  # keep the batch alive
                    selectors[space] = selector
        return cls(segment, entry.deletes, dead_rows, deleted_df, deleted_len, positions, selectors)


class LocalReader:
    """The index of one KB at one committed generation."""

    def __init__(self, generation: int, segments: list[LiveSegment], catalog: Catalog, kb: str,
                 bm25: BM25Params, stamp: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.generation = generation
        self.segments = segments
        self._catalog = catalog
        self._kb = kb
        self._bm25 = bm25
        self.stamp = stamp
        self._live = sum(s.live for s in segments)
        total_len = sum(s.segment.total_len - s.deleted_len for s in segments)
        self._avgdl = total_len / self._live if self._live else 1.0
        self._norms: dict[str, np.ndarray] = {}

    # -- counts ------------------------------------------------------------------------------
    def count(self) -> int:
        return self._live

    def spaces(self) -> list[EmbeddingSpace]:
        found: dict[EmbeddingSpace, None] = {}
        for live in self.segments:
            for space, dense in live.segment.dense.items():
                if len(dense):
                    found.setdefault(space)
        return list(found)

    def chunk_ids(self) -> np.ndarray:
        parts = [np.delete(np.asarray(s.segment.ids), s.dead_rows) for s in self.segments]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def chunks(self, ids: list[int]) -> dict[int, ChunkRow]:
        return self._catalog.chunks_by_id(self._kb, ids, self.generation)

    # -- BM25 with KB-wide statistics ----------------------------------------------------------
    def _idf(self, df: float) -> float:
        return idf(self._bm25, self._live, df)

    def _tf_part(self, tf: np.ndarray, norm: np.ndarray) -> np.ndarray:
        """The term-frequency factor; ``norm`` is 1 - b + b × length / avgdl (see ``_norm``)."""
        k1, method = np.float32(self._bm25.k1), self._bm25.method
        if method == "atire":
            return tf * (k1 + 1) / (tf + k1 * norm)
        if method == "bm25l":
            c = tf / norm + np.float32(0.5)
            return (k1 + 1) * c / (k1 + c)
        if method == "bm25+":
            return (k1 + 1) * tf / (k1 * norm + tf) + np.float32(0.5)
        return tf / (tf + k1 * norm)  # lucene and robertson (bm25s leaves out the constant k1 + 1)

    def _tf_bound(self) -> float:
        """An upper bound of ``_tf_part`` over every tf and length."""
        k1, method = self._bm25.k1, self._bm25.method
        if method in ("atire", "bm25l"):
            return k1 + 1
        if method == "bm25+":
            return k1 + 1.5
        return 1.0

    def _norm(self, segment: Segment) -> np.ndarray:
        """Per row of ``segment``: 1 - b + b × length / avgdl at this generation (computed once per reader)."""
        found = self._norms.get(segment.name)
        if found is None:
            b = self._bm25.b
            found = (1 - b + b * np.asarray(segment.doc_len, dtype=np.float64) / self._avgdl).astype(np.float32)
            self._norms[segment.name] = found
        return found

    # -- restriction to some documents ---------------------------------------------------------
    def _allowed_rows(self, live: LiveSegment, doc_ids: frozenset[str]) -> np.ndarray:
        """Sorted live rows of ``live`` that belong to one of ``doc_ids``."""
        segment = live.segment
        if segment.doc_keys is None:  # a segment written before segments named their documents
            segment.doc_keys = self._legacy_doc_keys(segment)
        rows = segment.rows_of_documents(doc_ids)
        if len(live.dead_rows) and len(rows):
            rows = np.setdiff1d(rows, live.dead_rows, assume_unique=True)
        return rows

    def _legacy_doc_keys(self, segment: Segment) -> list[str]:
        doc_of_row = np.asarray(segment.doc_of_row)
        first = np.full(segment.documents, -1, dtype=np.int64)
        first[doc_of_row[::-1]] = np.arange(len(doc_of_row))[::-1]  # the first row of each document
        keys = ["\0gone"] * segment.documents  # a document whose chunks the catalog dropped: none live
        ids = np.asarray(segment.ids)
        for start in range(0, segment.documents, 10_000):
            part = [d for d in range(start, min(start + 10_000, segment.documents)) if first[d] >= 0]
            rows = self._catalog.chunks_by_id(self._kb, [int(ids[first[d]]) for d in part], self.generation)
            for d in part:
                row = rows.get(int(ids[first[d]]))
                if row is not None:
                    keys[d] = row.doc_id
        return keys

    def bm25_top_k(self, tokens: list[str], k: int,
                   doc_ids: frozenset[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, BM25 scores), best first, scored as one index over all live chunks would be.

        With ``doc_ids`` only those documents' chunks are candidates (statistics stay KB-wide).

        Exact top-k with MaxScore pruning: terms are scored rarest first (highest possible contribution
        first); once the k-th best score so far beats what all remaining terms together could add, no
        chunk they alone match can enter the top-k, so the remaining (common, long) posting lists are
        only probed for the surviving candidates (binary search) instead of being scored in full.
        """
        counts: dict[str, int] = {}
        for token in tokens:
            if any(token in s.segment.term_ids for s in self.segments):
                counts[token] = counts.get(token, 0) + 1
        if not counts or not self._live or k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        weights: dict[str, float] = {}
        lengths: dict[str, int] = {}
        for token, count in counts.items():
            total = postings = 0
            for live in self.segments:
                term = live.segment.term_ids.get(token)
                if term is not None:
                    total += int(live.segment.df[term])
                    postings += int(live.segment.df[term])
                    if live.deleted_df is not None:
                        total -= int(live.deleted_df[term])
            if total > 0:  # a repeated query token counts once per occurrence, as in bm25s and rank_bm25
                weights[token] = count * self._idf(float(total))
                lengths[token] = postings
        if not weights:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        bound = self._tf_bound()
        order = sorted(weights, key=lambda t: (-weights[t], t))
        prunable = all(w > 0 for w in weights.values())
        rest = [bound * weights[t] for t in order]
        remaining = [float(sum(rest[i + 1 :])) for i in range(len(order))]  # what the terms after i can add
        state = _Scoring(self, doc_ids)
        scored = 0.0  # the most any chunk can have scored so far
        for i, token in enumerate(order):
            if state.pruned:
                state.probe(token, weights[token])
            else:
                state.score(token, weights[token])
                scored += rest[i]
                # Worth a look only when the k-th best could beat the rest and the rest is long to score.
                later = sum(lengths[t] for t in order[i + 1 :])
                if (prunable and scored > remaining[i] and state.tries < 3
                        and later > 4 * sum(len(s.segment) for s in self.segments) // 100):
                    state.try_prune(k, remaining[i])
            if state.pruned:
                state.narrow(k, remaining[i])
        return state.top(k)

    # -- dense ---------------------------------------------------------------------------------
    def dense_top_k(self, space: EmbeddingSpace, query: np.ndarray, k: int,
                    document_weight: float = 0.0,
                    doc_ids: frozenset[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, scores) in one embedding space, best first (with ``doc_ids``: among their chunks).

        A score is the chunk's cosine similarity to the query; with ``document_weight`` w > 0 it is
        (1 - w) × that + w × the similarity of the chunk's document vector, still within [-1, 1].
        """
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        found_ids, found_scores = [], []
        blend = document_weight > 0
        for live in self.segments:
            dense = live.segment.dense.get(space)
            if dense is None or not len(dense):
                continue
            # Blending reorders the candidates, so look a little deeper than k before cutting.
            depth = 2 * k if blend else k
            allowed = None
            if doc_ids is not None:
                allowed = dense.positions_of(self._allowed_rows(live, doc_ids))
                if not len(allowed):
                    continue
            positions, scores = dense.search(query, depth, live.dead_positions.get(space),
                                             live.selectors.get(space), allowed)
            rows = np.asarray(dense.rows[positions]).astype(np.int64)
            if blend and len(rows):
                documents = np.asarray(live.segment.doc_of_row[rows])
                document_scores = scores.copy()
                shared = dense.shared_documents(live.segment.doc_of_row)[documents]
                if shared.any():
                    document_scores[shared] = dense.docvec[documents[shared]] @ query
                scores = (1 - document_weight) * scores + document_weight * document_scores
            found_ids.append(np.asarray(live.segment.ids[rows]))
            found_scores.append(np.asarray(scores, dtype=np.float32))
        return _best(found_ids, found_scores, k)


class _Scoring:
    """One BM25 query's accumulators: a score array per segment, and after pruning the candidate rows."""

    _MARGIN = 1e-4  # float32 sums: prune only with room to spare

    def __init__(self, reader: LocalReader, doc_ids: frozenset[str] | None) -> None:
        self.reader = reader
        self.doc_ids = doc_ids
        self.scores: dict[int, np.ndarray] = {}  # segment index → scores of all its rows
        self.candidates: dict[int, np.ndarray] | None = None  # after pruning: rows still able to enter
        self.threshold = -np.inf
        self.tries = 0

    @property
    def pruned(self) -> bool:
        return self.candidates is not None

    def _postings(self, live: LiveSegment, token: str) -> tuple[np.ndarray, np.ndarray] | None:
        segment = live.segment
        term = segment.term_ids.get(token)
        if term is None:
            return None
        start, end = int(segment.post_ptr[term]), int(segment.post_ptr[term + 1])
        return segment.post_rows[start:end], segment.post_tf[start:end]

    def _add(self, at: int, rows: np.ndarray, tf: np.ndarray, weight: float) -> None:
        live = self.reader.segments[at]
        scores = self.scores.get(at)
        if scores is None:
            scores = self.scores[at] = np.zeros(len(live.segment), dtype=np.float32)
        norm = self.reader._norm(live.segment)
        scores[rows] += np.float32(weight) * self.reader._tf_part(tf.astype(np.float32), norm[rows])

    def score(self, token: str, weight: float) -> None:
        for at, live in enumerate(self.reader.segments):
            found = self._postings(live, token)
            if found is not None:
                self._add(at, found[0], found[1], weight)

    def _matched(self, at: int) -> np.ndarray:
        """Rows of segment ``at`` with a positive score that may be returned (live; in the restriction)."""
        live, scores = self.reader.segments[at], self.scores[at]
        if self.doc_ids is not None:
            allowed = self.reader._allowed_rows(live, self.doc_ids)
            return allowed[scores[allowed] > 0]
        if len(live.dead_rows):
            scores[live.dead_rows] = 0.0
        return np.flatnonzero(scores > 0)

    def try_prune(self, k: int, remaining: float) -> None:
        """Switch to probing when the k-th best score so far beats ``remaining`` (all later terms' bound)."""
        self.tries += 1
        pools = {at: self._matched(at) for at in self.scores}
        values = np.concatenate([self.scores[at][rows] for at, rows in pools.items()]) if pools else np.empty(0)
        if len(values) < k:
            return
        threshold = float(np.partition(values, len(values) - k)[len(values) - k])
        if threshold <= remaining * (1 + self._MARGIN) + self._MARGIN:
            return
        self.threshold = threshold
        self.candidates = pools

    def narrow(self, k: int, remaining: float) -> None:
        """Drop candidates that cannot reach the k-th best score any more."""
        assert self.candidates is not None
        floor = self.threshold - remaining * (1 + self._MARGIN) - self._MARGIN
        self.candidates = {at: rows[self.scores[at][rows] >= floor] for at, rows in self.candidates.items()}
        values = np.concatenate([self.scores[at][rows] for at, rows in self.candidates.items()])
        if len(values) >= k:
            self.threshold = max(self.threshold, float(np.partition(values, len(values) - k)[len(values) - k]))

    def probe(self, token: str, weight: float) -> None:
        """Add a term's contribution to the candidates: found by bisection in its postings when they are
        few against the posting list, else the list is scored in full (non-candidates are ignored)."""
        assert self.candidates is not None
        for at, rows in self.candidates.items():
            if not len(rows):
                continue
            found = self._postings(self.reader.segments[at], token)
            if found is None or not len(found[0]):
                continue
            posting_rows, tf = found
            if len(rows) * 16 > len(posting_rows):
                self._add(at, posting_rows, tf, weight)
                continue
            where = np.searchsorted(posting_rows, rows)
            inside = where < len(posting_rows)
            hit = np.zeros(len(rows), dtype=bool)
            hit[inside] = posting_rows[where[inside]] == rows[inside]
            self._add(at, rows[hit], tf[where[hit]], weight)

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        found_ids, found_scores = [], []
        for at, scores in self.scores.items():
            live = self.reader.segments[at]
            if self.candidates is not None:
                rows = self.candidates.get(at, np.empty(0, dtype=np.int64))
                rows = rows[scores[rows] > 0]
            else:
                rows = self._matched(at)
            if len(rows) > k:
                rows = rows[np.argpartition(-scores[rows], k - 1)[:k]]
            found_ids.append(np.asarray(live.segment.ids[rows]))
            found_scores.append(scores[rows])
        return _best(found_ids, found_scores, k)


def _best(ids: list[np.ndarray], scores: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    all_ids, all_scores = np.concatenate(ids).astype(np.int64), np.concatenate(scores).astype(np.float32)
    order = np.lexsort((all_ids, -all_scores))[:k]  # best first; equal scores by chunk id
    return all_ids[order], all_scores[order]


class ReaderCache:
    """Per KB, the reader of the committed generation; refreshes load only what changed."""

    def __init__(self, catalog: Catalog, kb_files: Callable[[str], KBFiles], bm25: BM25Params,
                 dense: DenseSettings, rebuild: Callable[[str], None], gpu: object | None = None) -> None:
        self._catalog = catalog
        self._files = kb_files
        self._bm25 = bm25
        self._dense = dense
        self._rebuild = rebuild
        self._gpu = gpu
        self._readers: dict[str, LocalReader] = {}
        self._segments: dict[tuple[str, str], Segment] = {}
        self._lock = threading.Lock()

    def get(self, kb: str) -> LocalReader:
        rebuilt = False
        for _ in range(8):
            generation = self._catalog.generation(kb)
            if generation == 0:
                return LocalReader(0, [], self._catalog, kb, self._bm25)
            files = self._files(kb)
            path = files.manifest_path(generation)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                if self._catalog.generation(kb) != generation:
                    continue  # a commit moved on while we looked
                if rebuilt:
                    break
                # An index written by an older version (or lost): the catalog is the source of truth.
                self._rebuild(kb)
                rebuilt = True
                continue
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            cached = self._readers.get(kb)
            if cached is not None and cached.generation == generation and cached.stamp == stamp:
                return cached
            manifest = files.read(generation)
            if manifest is None:
                continue
            try:
                reader = self._load(kb, files, manifest, stamp, cached)
            except (OSError, RuntimeError, ValueError):
                # A merge replaced these segments while we loaded them: read the manifest again.
                continue
            with self._lock:
                self._readers[kb] = reader
                names = {(kb, s.segment.name) for s in reader.segments}
                for key in [key for key in self._segments if key[0] == kb and key not in names]:
                    del self._segments[key]
            return reader
        raise IndexMissing(f"the index of knowledge base '{kb}' is missing; any `rag sync` or `rag ingest` of it rebuilds it")

    def _load(self, kb: str, files: KBFiles, manifest: Manifest, stamp: tuple[int, int, int],
              previous: LocalReader | None) -> LocalReader:
        known = {(s.segment.name, s.deletes): s for s in previous.segments} if previous else {}
        segments = []
        for entry in manifest.segments:
            live = known.get((entry.name, entry.deletes))
            if live is None:
                segment = self._segments.get((kb, entry.name))
                if segment is None:
                    segment = Segment(files.segments / entry.name, self._dense, self._gpu)
                    self._segments[(kb, entry.name)] = segment
                live = LiveSegment.open(segment, entry, files)
            segments.append(live)
        return LocalReader(manifest.generation, segments, self._catalog, kb, self._bm25, stamp)

    def forget(self, kb: str) -> None:
        with self._lock:
            self._readers.pop(kb, None)
            for key in [key for key in self._segments if key[0] == kb]:
                del self._segments[key]

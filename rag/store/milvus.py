"""The Milvus index backend: the IndexBackend Protocol (rag.store.backend) over Milvus Lite or a server.

The catalog stays the source of truth (chunk ids, texts, the committed generation). A commit writes
the new rows tagged with the generation being staged, marks replaced rows ``deleted_gen = G``, writes
the generation's BM25 statistics, then flips the catalog; readers filter on their generation, so a
search never sees a half-committed ingest. Opening a writer undoes whatever an interrupted one wrote
past the catalog's generation (rows added, rows marked deleted, statistics), so a ``kill -9`` mid-sync
leaves Milvus consistent with the catalog. See docs/deploy.md for the layout and the measurements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed import EmbeddingRouter
from rag.errors import RagError
from rag.store.bm25_index import BM25Params, idf
from rag.store.catalog import Catalog, ChunkRow
from rag.store.milvus_client import STRONG, MilvusStore, open_store
from rag.store.milvus_schema import ALIVE, MAX_TOP_K, literal, restricted, term_key, visible
from rag.store.milvus_stats import (
    GenerationStats,
    frequencies_of,
    stored_weights,
    term_frequencies,
    tf_part,
)
from rag.store.segment import EmbeddingSpace
from rag.store.staging import StagingWriter
from rag.store.writer import segment_data
from rag.types import IndexChunk

EMPTY = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
REBUILD_BATCH = 5_000


class IndexMissing(RagError):
    code = "index_missing"
    http_status = 503


def space_key(space: EmbeddingSpace) -> str:
    return f"{space.model}@{space.language}"


def _best(ids: list[int], scores: list[float], k: int) -> tuple[np.ndarray, np.ndarray]:
    if not ids:
        return EMPTY
    all_ids, all_scores = np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float32)
    order = np.lexsort((all_ids, -all_scores))[:k]  # best first; equal scores by chunk id
    return all_ids[order], all_scores[order]


class MilvusWriter(StagingWriter):
    """The single writer of one KB (a file lock in the KB's folder, as the local engine's writer)."""

    def __init__(self, backend: MilvusBackend, kb: str, wait: bool = True) -> None:
        super().__init__(backend.catalog, kb, backend.kb_dir(kb), wait)
        self._backend = backend
        self._store = backend.store

    def _open(self) -> None:
        self.catalog.recover(self.kb)
        committed = self.catalog.generation(self.kb)
        self._backend.recover(self.kb, committed)
        if committed > 0 and self._store.stats(self.kb, committed) is None:
            # No Milvus index for the committed generation (a KB of the local engine, or lost): the
            # catalog is the source of truth.
            self._backend.rebuild(self.kb, committed)
        self.generation = committed + 1

    def _undo(self) -> None:
        super()._undo()
        self._backend.recover(self.kb, self.catalog.generation(self.kb))

    def commit(self) -> int:
        """Publish everything staged as one generation; returns the generation now visible."""
        if not self.pending:
            return self.generation - 1
        generation = self.generation
        stats = self._store.stats(self.kb, generation - 1) if generation > 1 else None
        stats = stats.copy() if stats is not None else GenerationStats()
        self._backend.tombstone(self.kb, sorted(set(self._dead)), generation, stats)
        ids = [i for chunk_ids, _ in self._rows.values() for i in chunk_ids]
        owners = [doc for doc, (chunk_ids, _) in self._rows.items() for _ in chunk_ids]
        chunks = [c for _, doc_chunks in self._rows.values() for c in doc_chunks]
        self._backend.add(self.kb, generation, ids, owners, chunks, stats)
        self._store.seal(self._store.chunk_collections())
        self._store.put_stats(self.kb, generation, stats)
        self.catalog.commit(self.kb, generation, self._staged, self._deleted)
        self._backend.purge(self.kb, generation)
        self._staged, self._deleted, self._rows, self._dead = [], [], {}, []
        self.generation += 1
        return generation


class MilvusReader:
    """The index of one KB at one committed generation: every search filters on that generation."""

    def __init__(self, backend: MilvusBackend, kb: str, generation: int, stats: GenerationStats) -> None:
        self._backend = backend
        self._store = backend.store
        self._kb = kb
        self.generation = generation
        self.stats = stats
        self._visible = visible(kb, generation)

    def count(self) -> int:
        return self.stats.chunks

    def spaces(self) -> list[EmbeddingSpace]:
        found = []
        for key in self.stats.spaces:
            model, _, language = key.rpartition("@")
            found.append(EmbeddingSpace(model, language))
        return found

    def chunk_ids(self) -> np.ndarray:
        if not self.generation:
            return EMPTY[0]
        rows = self._store.query_all(self._store.lexical, self._visible, ["id"])
        return np.sort(np.asarray([row["id"] for row in rows], dtype=np.int64))

    def chunks(self, ids: list[int]) -> dict[int, ChunkRow]:
        return self._backend.catalog.chunks_by_id(self._kb, ids, self.generation)

    def bm25_top_k(self, tokens: list[str], k: int,
                   doc_ids: frozenset[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, BM25 scores) with the KB-wide statistics of this generation.

        Milvus finds candidates by the stored weights (fixed k1, b and the average length when each row
        was written); the candidates are then scored exactly as the local engine scores them."""
        k = min(k, MAX_TOP_K)
        if k <= 0 or not self.stats.chunks or not tokens or doc_ids is not None and not doc_ids:
            return EMPTY
        params = self._backend.bm25
        counts: dict[int, int] = {}
        for token in tokens:
            key = term_key(token)
            if self.stats.df.get(key, 0) > 0:
                counts[key] = counts.get(key, 0) + 1
        if not counts:
            return EMPTY
        weights = {key: idf(params, self.stats.chunks, float(self.stats.df[key])) for key in counts}
        query = {key: max(weights[key] * count, 1e-6) for key, count in counts.items()}
        depth = min(MAX_TOP_K, max(3 * k, k + 100))
        hits = self._store.client.search(
            self._store.lexical, data=[query], anns_field="bm25", limit=depth,
            filter=restricted(self._visible, doc_ids), output_fields=["bm25", "length", "bm25_avgdl"],
            search_params={"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}, consistency_level=STRONG,
        )[0]
        avgdl = self.stats.avgdl
        ids, scores = [], []
        for hit in hits:
            entity = hit["entity"]
            length = float(entity["length"])
            stored = {int(key): float(value) for key, value in entity["bm25"].items()}
            tf = frequencies_of({key: stored[key] for key in counts if key in stored}, length,
                                float(entity["bm25_avgdl"]))
            score = sum(counts[key] * weights[key] * tf_part(params, value, length, avgdl)
                        for key, value in tf.items() if value > 0)
            if score > 0:
                ids.append(int(hit["id"]))
                scores.append(score)
        return _best(ids, scores, k)

    def dense_top_k(self, space: EmbeddingSpace, query: np.ndarray, k: int, document_weight: float = 0.0,
                    doc_ids: frozenset[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, scores) in one embedding space: cosine similarity, or with ``document_weight``
        w > 0: (1 - w) × that + w × the similarity of the chunk's document vector."""
        k = min(k, MAX_TOP_K)
        if k <= 0 or space_key(space) not in self.stats.spaces or doc_ids is not None and not doc_ids:
            return EMPTY
        collection = self._store.dense(space.model)
        if collection is None:
            return EMPTY
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        expression = restricted(f"{self._visible} and language == {literal(space.language)}", doc_ids)
        if document_weight <= 0:
            hits = self._search(collection, "vector", query, k, expression, [])
            return _best([int(h["id"]) for h in hits], [float(h["distance"]) for h in hits], k)
        # Blending reorders candidates: the best chunks and the chunks of the best documents are scored.
        depth = min(MAX_TOP_K, max(2 * k, k + 20))
        blended: dict[int, float] = {}
        for field, other in (("vector", "docvec"), ("docvec", "vector")):
            for hit in self._search(collection, field, query, depth, expression, [other]):
                similarity = float(hit["distance"])
                other_similarity = float(np.asarray(hit["entity"][other], dtype=np.float32) @ query)
                chunk, document = (similarity, other_similarity) if field == "vector" else (other_similarity,
                                                                                          similarity)
                blended[int(hit["id"])] = (1 - document_weight) * chunk + document_weight * document
        return _best(list(blended), list(blended.values()), k)

    def _search(self, collection: str, field: str, query: np.ndarray, limit: int, expression: str,
                fields: list[str]) -> list[dict[str, Any]]:
        return list(self._store.client.search(
            collection, data=[query.tolist()], anns_field=field, limit=limit, filter=expression,
            output_fields=fields, search_params=self._store.dense_search_params(limit), consistency_level=STRONG,
        )[0])


class MilvusBackend:
    """IndexBackend over Milvus collections shared by every KB (the KB is the partition key)."""

    def __init__(self, catalog: Catalog, kb_dir: Callable[[str], Path], router: EmbeddingRouter, bm25: BM25Params,
                 uri: str, token: str | None = None, dense_index: str = "auto", ivf_nprobe: int = 32,
                 hnsw_ef_search: int = 128) -> None:
        self.catalog = catalog
        self.kb_dir = kb_dir
        self.router = router
        self.bm25 = bm25
        self.store: MilvusStore = open_store(uri, token, dense_index=dense_index, ivf_nprobe=ivf_nprobe,
                                             hnsw_ef_search=hnsw_ef_search)
        self._readers: dict[str, MilvusReader] = {}
        self._lock = threading.Lock()

    # -- IndexBackend ------------------------------------------------------------------------------
    def writer(self, kb: str, wait: bool = True) -> MilvusWriter:
        return MilvusWriter(self, kb, wait)

    def reader(self, kb: str) -> MilvusReader:
        rebuilt = False
        for _ in range(8):
            generation = self.catalog.generation(kb)
            cached = self._readers.get(kb)
            if cached is not None and cached.generation == generation:
                return cached
            if generation == 0:
                return MilvusReader(self, kb, 0, GenerationStats())
            stats = self.store.stats(kb, generation)
            if stats is None:
                if self.catalog.generation(kb) != generation:
                    continue  # a commit moved on while we looked
                if rebuilt:
                    break
                with self.writer(kb):  # opening a writer rebuilds a missing index from the catalog
                    pass
                rebuilt = True
                continue
            reader = MilvusReader(self, kb, generation, stats)
            with self._lock:
                self._readers[kb] = reader
            return reader
        raise IndexMissing(f"the Milvus index of knowledge base '{kb}' is missing; any `rag sync` or "
                           "`rag ingest` of it rebuilds it")

    def optimize(self, kb: str) -> int:
        """Compact the collections (Milvus merges its segments; a no-op on Milvus Lite). Returns 1: the
        KB is one index to its readers, 0 when it is empty."""
        generation = self.catalog.generation(kb)  # KBNotFound for an unknown KB
        for collection in self.store.chunk_collections():
            self.store.client.compact(collection)
        stats = self.store.stats(kb, generation) if generation else None
        return 1 if stats is not None and stats.chunks else 0

    def forget(self, kb: str) -> None:
        with self._lock:
            self._readers.pop(kb, None)
        if not self.catalog.kb_exists(kb):  # the KB was deleted: its rows go too
            for collection in self.store.chunk_collections():
                self.store.delete_where(collection, f"kb == {literal(kb)}")
            self.store.drop_stats(kb, "generation >= 0")

    # -- what writers do -----------------------------------------------------------------------------
    def recover(self, kb: str, committed: int) -> None:
        """Undo what a writer did past ``committed``; drop rows no kept generation sees."""
        for collection in self.store.chunk_collections():
            self.store.delete_where(collection, f"kb == {literal(kb)} and added_gen > {committed}")
            self.store.revive_deleted_after(collection, kb, committed)
            self.store.delete_where(collection, f"kb == {literal(kb)} and deleted_gen < {committed}")
        self.store.drop_stats(kb, f"generation > {committed}")

    def purge(self, kb: str, generation: int) -> None:
        """After ``generation`` is committed: readers of generation - 1 may still look; older rows go."""
        for collection in self.store.chunk_collections():
            self.store.delete_where(collection, f"kb == {literal(kb)} and deleted_gen < {generation}")
        self.store.drop_stats(kb, f"generation < {generation - 1}")

    def tombstone(self, kb: str, dead: list[int], generation: int, stats: GenerationStats) -> None:
        """Mark the rows of ``dead`` chunks deleted from ``generation`` on, and take them out of ``stats``."""
        if not dead:
            return
        for collection in self.store.chunk_collections():
            rows = [row for row in self.store.rows(collection, dead, ["*"]) if row["deleted_gen"] == ALIVE]
            if collection == self.store.lexical:
                for row in rows:
                    tf = frequencies_of({int(k): float(v) for k, v in row["bm25"].items()}, float(row["length"]),
                                        float(row["bm25_avgdl"]))
                    stats.add(list(tf), float(row["length"]), -1)
            else:
                for row in rows:
                    stats.count_space(f"{row['model']}@{row['language']}", -1)
            self.store.upsert(collection, [row | {"deleted_gen": generation} for row in rows])

    def add(self, kb: str, generation: int, ids: list[int], owners: list[str], chunks: list[IndexChunk],
            stats: GenerationStats, avgdl: float | None = None) -> None:
        """Insert the rows of new chunks, tagged with ``generation``, and count them into ``stats``."""
        if not ids:
            return
        frequencies = [term_frequencies(c.tokens) for c in chunks]
        for tf, c in zip(frequencies, chunks, strict=True):
            stats.add(list(tf), float(len(c.tokens)), +1)
        avgdl = avgdl or stats.avgdl
        self.store.insert(self.store.lexical, [
            {"id": i, "kb": kb, "doc_id": doc, "language": c.language, "added_gen": generation, "deleted_gen": ALIVE,
             "length": len(c.tokens), "bm25_avgdl": avgdl, "bm25": stored_weights(tf, float(len(c.tokens)), avgdl)}
            for i, doc, c, tf in zip(ids, owners, chunks, frequencies, strict=True)])
        data = segment_data(kb, ids, owners, chunks, self.catalog, self.router)
        doc_names = list(dict.fromkeys(owners[i] for i in np.argsort(np.asarray(ids), kind="stable")))
        language_of = {i: c.language for i, c in zip(ids, chunks, strict=True)}
        for space, (rows, matrix) in data.vectors.items():
            if not len(rows):
                continue
            documents = data.doc_of_row[rows]
            sums = np.zeros((len(doc_names), matrix.shape[1]), dtype=np.float32)
            np.add.at(sums, documents, matrix)
            sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
            collection = self.store.dense(space.model, dim=int(matrix.shape[1]))
            assert collection is not None
            chunk_ids = data.ids[rows]
            self.store.insert(collection, [
                {"id": int(i), "kb": kb, "doc_id": doc_names[d], "language": language_of[int(i)],
                 "added_gen": generation, "deleted_gen": ALIVE, "model": space.model, "vector": v.tolist(), "docvec": sums[d].tolist()}
                for i, d, v in zip(chunk_ids, documents, matrix, strict=True)])
            stats.count_space(space_key(space), len(rows))

    def rebuild(self, kb: str, generation: int) -> None:
        """Write the Milvus rows of ``generation`` from the catalog (the KB's chunks and cached vectors)."""
        for collection in self.store.chunk_collections():
            self.store.delete_where(collection, f"kb == {literal(kb)}")
        self.store.drop_stats(kb, "generation >= 0")
        count, total = self.catalog.visible_token_totals(kb, generation)
        avgdl = total / count if count else 1.0
        stats = GenerationStats()
        batch: list[Any] = []  # the catalog streams the chunks: a batch at a time is held, not the KB
        for row in self.catalog.visible_chunks(kb, generation):
            batch.append(row)
            if len(batch) == REBUILD_BATCH:
                self._rebuild_batch(kb, generation, batch, stats, avgdl)
                batch = []
        if batch:
            self._rebuild_batch(kb, generation, batch, stats, avgdl)
        self.store.seal(self.store.chunk_collections())
        self.store.put_stats(kb, generation, stats)

    def _rebuild_batch(self, kb: str, generation: int, rows: list[Any], stats: GenerationStats, avgdl: float) -> None:
        chunks = [IndexChunk(0, "", None, None, row["language"], row["text_hash"],
                             row["tokens"].split(" ") if row["tokens"] else []) for row in rows]
        self.add(kb, generation, [row["id"] for row in rows], [row["doc_id"] for row in rows], chunks, stats,
                 avgdl=avgdl)

"""A persistent FAISS inner-product index over L2-normalised vectors, keyed by chunk id.

Beside the chunk vectors it keeps one vector per document (the normalised mean of its chunks), so a
search can blend how well a chunk matches with how well its whole document does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np


class DenseIndex:
    def __init__(self, index: faiss.Index, sorted_ids: np.ndarray | None = None,
                 doc_rows: np.ndarray | None = None, doc_vectors: np.ndarray | None = None) -> None:
        self._index = index
        # Chunk ids in ascending order, the row of each one's document in doc_vectors, and those vectors.
        self._sorted_ids = sorted_ids
        self._doc_rows = doc_rows
        self._doc_vectors = doc_vectors

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, doc_keys: Sequence[str] | None = None) -> DenseIndex:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids):
            index.add_with_ids(vectors, ids)
        if doc_keys is None or not len(ids):
            return cls(index)
        documents: dict[str, int] = {}
        rows = np.fromiter((documents.setdefault(key, len(documents)) for key in doc_keys), dtype=np.int64,
                           count=len(ids))
        doc_vectors = np.zeros((len(documents), dim), dtype=np.float32)
        np.add.at(doc_vectors, rows, vectors)
        doc_vectors /= np.maximum(np.linalg.norm(doc_vectors, axis=1, keepdims=True), 1e-12)
        order = np.argsort(ids, kind="stable")
        return cls(index, ids[order], rows[order], doc_vectors)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def search(self, query: np.ndarray, k: int, document_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, scores), best first.

        A score is the chunk's cosine similarity to the query; with ``document_weight`` w > 0 it is
        (1 - w) × that + w × the similarity of the chunk's document vector, still within [-1, 1].
        """
        if len(self) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        query = np.asarray(query, dtype=np.float32).reshape(1, -1)
        blend = document_weight > 0 and self._doc_vectors is not None
        # Blending reorders the candidates, so look a little deeper than k before cutting.
        depth = min(2 * k if blend else k, len(self))
        scores, ids = self._index.search(query, depth)
        keep = ids[0] >= 0
        ids, scores = ids[0][keep], scores[0][keep]
        if blend:
            assert self._sorted_ids is not None and self._doc_rows is not None and self._doc_vectors is not None
            rows = self._doc_rows[np.searchsorted(self._sorted_ids, ids)]
            scores = (1 - document_weight) * scores + document_weight * (self._doc_vectors[rows] @ query[0])
            order = np.argsort(-scores, kind="stable")
            ids, scores = ids[order], scores[order]
        return ids[:k], scores[:k]

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))
        if self._doc_vectors is not None:
            np.savez(_documents_path(path), sorted_ids=self._sorted_ids, doc_rows=self._doc_rows,
                     doc_vectors=self._doc_vectors)

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        index = faiss.read_index(str(path))
        documents = _documents_path(path)
        if not documents.exists():  # a snapshot written before document vectors existed
            return cls(index)
        with np.load(documents, allow_pickle=False) as arrays:
            return cls(index, arrays["sorted_ids"], arrays["doc_rows"], arrays["doc_vectors"])


def _documents_path(path: Path) -> Path:
    return path.with_name(path.name + ".documents.npz")

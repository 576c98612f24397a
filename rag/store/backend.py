"""The seam between the engine and an index store: one small Protocol every backend implements.

``rag.retrieve`` and ``rag.api`` depend on this module only. A backend keeps, per KB, an index of the
chunks visible at each committed generation; its behaviour is pinned down by the conformance suite in
``tests/index_backend_suite.py`` (each backend's test module provides one fixture).

Contract:
- ``writer(kb)`` is the KB's single writer (a context manager): ``stage`` a document's new chunks (its
  earlier chunks are tombstoned), ``delete`` a document, ``commit`` everything staged as one generation.
  Nothing staged is visible before ``commit`` returns; an interrupted writer leaves the last commit.
- ``reader(kb)`` is refreshed to the KB's committed generation; it never returns a chunk outside that
  generation (no caller over-fetches to drop deleted chunks).
- ``IndexReader.bm25_top_k`` ranks with KB-wide BM25 statistics; ``dense_top_k`` searches one
  embedding space (model × chunk language).
- ``doc_ids`` (both searches): when given, only chunks of those documents are candidates. The
  restriction is applied inside the index search (an ID selector / filter expression), never by
  cutting a top-k afterwards, so a filter matching 1% of a KB still returns a full top-k.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

from rag.store.catalog import ChunkRow, StagedDocument
from rag.store.segment import EmbeddingSpace
from rag.types import IndexChunk


class IndexWriter(AbstractContextManager["IndexWriter"], Protocol):
    generation: int  # the generation being staged

    @property
    def pending(self) -> int: ...

    def stage(self, document: StagedDocument, chunks: list[IndexChunk]) -> None: ...

    def stage_many(self, items: list[tuple[StagedDocument, list[IndexChunk]]]) -> None: ...

    def delete(self, doc_id: str) -> None: ...

    def commit(self) -> int: ...


class IndexReader(Protocol):
    generation: int

    def count(self) -> int: ...

    def spaces(self) -> list[EmbeddingSpace]: ...

    def bm25_top_k(self, tokens: list[str], k: int,
                   doc_ids: frozenset[str] | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def dense_top_k(self, space: EmbeddingSpace, query: np.ndarray, k: int,
                    document_weight: float = 0.0,
                    doc_ids: frozenset[str] | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def chunks(self, ids: list[int]) -> dict[int, ChunkRow]: ...

    def chunk_ids(self) -> np.ndarray: ...


class IndexBackend(Protocol):
    def writer(self, kb: str, wait: bool = True) -> IndexWriter: ...

    def reader(self, kb: str) -> IndexReader: ...

    def optimize(self, kb: str) -> int: ...

    def forget(self, kb: str) -> None: ...

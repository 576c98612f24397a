"""The single writer of a KB: stages documents, then commits them as a new generation.

One writer per KB at a time, across threads and processes (a file lock). Opening a writer first undoes
whatever an interrupted writer staged, so a ``kill -9`` leaves the last committed state.

A commit costs in proportion to what it changes: it writes one new segment holding only the chunks
staged since the last commit, one tombstone file per older segment that lost chunks, and a manifest;
no other segment is read or rewritten. Then the catalog's generation flips.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rag.embed import EmbeddingRouter
from rag.store.catalog import Catalog
from rag.store.manifest import KBFiles, Manifest, SegmentEntry
from rag.store.segment import DenseSettings, EmbeddingSpace, SegmentData, load_npy, write_segment
from rag.store.staging import StagingWriter
from rag.types import IndexChunk


class KBWriter(StagingWriter):
    def __init__(
        self,
        catalog: Catalog,
        kb: str,
        files: KBFiles,
        router: EmbeddingRouter,
        dense: DenseSettings,
        wait: bool = True,
        on_commit: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(catalog, kb, files.root, wait)
        self.files = files
        self._router = router
        self._dense = dense
        self._on_commit = on_commit

    def _open(self) -> None:
        self.catalog.recover(self.kb)
        committed = self.catalog.generation(self.kb)
        self.files.ensure()
        with self.files.manifest_lock.hold():
            for generation in self.files.generations():
                if generation > committed:  # published by a writer killed before the catalog flipped
                    self.files.manifest_path(generation).unlink(missing_ok=True)
            self._clean(committed)
            if committed > 0 and self.files.read(committed) is None:
                # No index for the committed generation (written by an older version, or lost): the
                # catalog is the source of truth.
                self._rebuild(committed)
        self.generation = committed + 1

    def _clean(self, committed: int) -> None:
        """Drop what no kept manifest names; skipped while a merge (which owns unpublished files) runs."""
        with self.files.merge_lock.hold(wait=False) as free:
            if free:
                self.files.remove_unreferenced(committed - 1, committed)

    def commit(self) -> int:
        """Publish everything staged as one generation; returns the generation now visible."""
        if not self.pending:
            return self.generation - 1
        generation = self.generation
        ids = [i for doc_ids, _ in self._rows.values() for i in doc_ids]
        owners = [doc for doc, (doc_ids, _) in self._rows.items() for _ in doc_ids]
        chunks = [c for _, doc_chunks in self._rows.values() for c in doc_chunks]
        data = segment_data(self.kb, ids, owners, chunks, self.catalog, self._router)
        with self.files.manifest_lock.hold():
            current = self.files.read(generation - 1) or Manifest(generation - 1)
            manifest = with_deletes(self.files, current, np.asarray(self._dead, dtype=np.int64), generation)
            if len(data.ids):
                name = self.files.new_segment_name(generation)
                write_segment(self.files.segments / name, data, self._dense)
                manifest.segments.append(SegmentEntry(name, len(data.ids)))
            self.files.publish(manifest)
        self.catalog.commit(self.kb, generation, self._staged, self._deleted)
        with self.files.manifest_lock.hold():
            self._clean(generation)
        self._staged, self._deleted, self._rows, self._dead = [], [], {}, []
        self.generation += 1
        if self._on_commit is not None:
            self._on_commit(self.kb)
        return generation

    def _rebuild(self, generation: int) -> None:
        ids: list[int] = []
        doc_ids: list[str] = []
        chunks: list[IndexChunk] = []
        for row in self.catalog.visible_chunks(self.kb, generation):
            ids.append(row["id"])
            doc_ids.append(row["doc_id"])
            chunks.append(IndexChunk(0, "", None, None, row["language"], row["text_hash"],
                                     row["tokens"].split(" ") if row["tokens"] else []))
        manifest = Manifest(generation)
        if ids:
            data = segment_data(self.kb, ids, doc_ids, chunks, self.catalog, self._router)
            name = self.files.new_segment_name(generation)
            write_segment(self.files.segments / name, data, self._dense)
            manifest.segments.append(SegmentEntry(name, len(ids)))
        self.files.publish(manifest)


def with_deletes(files: KBFiles, manifest: Manifest, dead: np.ndarray, generation: int) -> Manifest:
    """``manifest`` as of ``generation``: the chunk ids ``dead`` tombstoned in whichever segment holds them."""
    entries = []
    for entry in manifest.segments:
        if len(dead):
            ids = load_npy(files.segments / entry.name / "ids.npy", mmap=True)
            at = np.minimum(np.searchsorted(ids, dead), max(len(ids) - 1, 0))
            found = dead[np.asarray(ids[at]) == dead] if len(ids) else dead[:0]
            if len(found):
                merged = np.union1d(files.read_deletes(entry.deletes), found)
                entry = SegmentEntry(entry.name, entry.rows, files.write_deletes(entry.name, generation, merged),
                                     len(merged))
        if entry.live > 0:
            entries.append(entry)
    return Manifest(generation, entries)


def segment_data(kb: str, ids: list[int], doc_ids: list[str], chunks: list[IndexChunk], catalog: Catalog,
                 router: EmbeddingRouter) -> SegmentData:
    """A segment's contents: tokens, document rows and, per embedding space, vectors from the cache."""
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    ids_sorted = np.asarray(ids, dtype=np.int64)[order]
    documents: dict[str, int] = {}
    doc_of_row = np.fromiter((documents.setdefault(doc_ids[i], len(documents)) for i in order),
                             dtype=np.int32, count=len(order))
    chunks = [chunks[i] for i in order]
    by_space: dict[EmbeddingSpace, list[int]] = {}
    for row, chunk in enumerate(chunks):
        for model in router.models_for_language(chunk.language):
            by_space.setdefault(EmbeddingSpace(model, chunk.language), []).append(row)
    vectors: dict[EmbeddingSpace, tuple[np.ndarray, np.ndarray]] = {}
    for space, rows in by_space.items():
        vectors[space] = (np.asarray(rows, dtype=np.int32), _vectors(kb, space.model, [chunks[r] for r in rows],
                                                                     catalog, router))
    return SegmentData(ids_sorted, doc_of_row, tokens=[c.tokens for c in chunks], vectors=vectors,
                       doc_keys=list(documents))


def _vectors(kb: str, model: str, chunks: list[IndexChunk], catalog: Catalog,
             router: EmbeddingRouter) -> np.ndarray:
    given = [c.vectors.get(model) for c in chunks]
    wanted = list({c.text_hash for c, v in zip(chunks, given, strict=True) if v is None})
    cached = catalog.cached_embeddings(model, wanted) if wanted else {}
    missing = set(wanted) - cached.keys()
    if missing:  # the embedding models were changed in the settings since these chunks were written
        router.ensure(catalog, catalog.chunk_texts_by_hash(kb, missing))
        cached = catalog.cached_embeddings(model, wanted)
    if not chunks:
        return np.empty((0, 0), dtype=np.float32)
    return np.stack([v if v is not None else cached[c.text_hash]
                     for c, v in zip(chunks, given, strict=True)]).astype(np.float32)

"""Background merging of a KB's segments (a tiered policy, as in Lucene) and the full merge of `rag kb optimize`.

Segments are grouped in tiers by live size (tier t holds segments of factor^t .. factor^(t+1) live chunks);
when a tier holds ``factor`` segments they are merged into one, dropping tombstoned chunks. So a KB of N
chunks has O(factor × log N) segments, and each chunk is rewritten O(log N) times over its life.

A merge reads immutable segments and writes a new one without any lock readers or writers wait on; it takes
the manifest lock only to swap the merged segments for the new one in the newest manifest (chunks deleted
in the meantime carry over as tombstones of the new segment). ``kill -9`` at any point leaves the last
published manifest, and the next writer removes the unpublished segment.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rag.store.manifest import KBFiles, Manifest, SegmentEntry
from rag.store.segment import DenseSettings, EmbeddingSpace, Segment, SegmentData, write_segment


def choose(manifest: Manifest, factor: int) -> list[SegmentEntry]:
    """The segments the tiered policy merges next (smallest tier first), or [] when none need merging."""
    tiers: dict[int, list[SegmentEntry]] = {}
    for entry in manifest.segments:
        tiers.setdefault(int(math.log(max(entry.live, 1), factor)), []).append(entry)
    for tier in sorted(tiers):
        if len(tiers[tier]) >= factor:
            return sorted(tiers[tier], key=lambda e: e.live)[:factor]
    # A segment mostly made of deleted chunks is rewritten on its own.
    heavy = [e for e in manifest.segments if e.dead * 2 > e.rows]
    return heavy[:1]


def merge(files: KBFiles, dense: DenseSettings, factor: int, force: bool = False,
          stop: Callable[[], bool] | None = None) -> int:
    """Merge until the policy is satisfied (with ``force``: into one segment). Returns merges done.

    ``stop`` is asked before each merge and before publishing one: when it says so (the KB is being
    deleted) the merge ends without publishing, and its unpublished segment is left to the next writer."""
    done = 0
    stop = stop or (lambda: False)
    with files.merge_lock.hold(wait=force) as held:
        if not held:
            return 0  # another merge of this KB is running
        while not stop():
            manifest = files.latest()
            if manifest is None:
                return done
            if force:
                chosen = manifest.segments if len(manifest.segments) > 1 or any(
                    e.dead for e in manifest.segments) else []
            else:
                chosen = choose(manifest, factor)
            if not chosen:
                return done
            if not _merge_once(files, dense, manifest.generation, chosen, stop):
                return done
            done += 1
            if force:
                return done
        return done


def _merge_once(files: KBFiles, dense: DenseSettings, generation: int, chosen: list[SegmentEntry],
                stop: Callable[[], bool]) -> bool:
    segments = [Segment(files.segments / entry.name, DenseSettings(kind="flat")) for entry in chosen]
    dead_at_start = [files.read_deletes(entry.deletes) for entry in chosen]
    data = _merged_data(segments, dead_at_start)
    name = files.new_segment_name(generation)
    if len(data.ids):
        write_segment(files.segments / name, data, dense)
    if stop():
        return False
    with files.manifest_lock.hold():
        latest = files.latest()
        if latest is None or stop():
            return False
        names = {entry.name for entry in chosen}
        current = {entry.name: entry for entry in latest.segments if entry.name in names}
        # Chunks deleted while we merged: they are in the new segment, so they become its tombstones.
        # A segment gone from the manifest lost all its chunks meanwhile (a commit drops empty segments).
        later = [np.setdiff1d(files.read_deletes(current[e.name].deletes) if e.name in current
                              else np.asarray(segment.ids), start)
                 for e, segment, start in zip(chosen, segments, dead_at_start, strict=True)]
        dead = np.unique(np.concatenate(later)) if later else np.empty(0, dtype=np.int64)
        replaced: list[SegmentEntry] = []
        placed = False
        for entry in latest.segments:
            if entry.name not in names:
                replaced.append(entry)
            elif not placed:
                placed = True
                if len(data.ids) and len(dead) < len(data.ids):
                    deletes = files.write_deletes(name, latest.generation, dead) if len(dead) else None
                    replaced.append(SegmentEntry(name, len(data.ids), deletes, len(dead)))
        files.publish(Manifest(latest.generation, replaced, latest.version + 1))
        files.remove_unreferenced(0)  # keeps every manifest; drops the merged-away segments no manifest names
    return True


def _merged_data(segments: list[Segment], dead: list[np.ndarray]) -> SegmentData:
    """One segment's data from the live rows of ``segments``, rows in ascending chunk-id order."""
    live_rows = [np.setdiff1d(np.arange(len(s)), s.rows_of(d)) for s, d in zip(segments, dead, strict=True)]
    ids = np.concatenate([np.asarray(s.ids)[rows] for s, rows in zip(segments, live_rows, strict=True)])
    order = np.argsort(ids, kind="stable")
    new_row = np.empty(len(ids), dtype=np.int64)
    new_row[order] = np.arange(len(ids))
    # Per source segment: old row → new row (-1: dropped).
    maps, offset, doc_offset = [], 0, 0
    doc_parts = []
    for segment, rows in zip(segments, live_rows, strict=True):
        mapping = np.full(len(segment), -1, dtype=np.int64)
        mapping[rows] = new_row[offset : offset + len(rows)]
        maps.append(mapping)
        doc_parts.append(np.asarray(segment.doc_of_row)[rows].astype(np.int64) + doc_offset)
        offset += len(rows)
        doc_offset += segment.documents
    documents = np.concatenate(doc_parts) if doc_parts else np.empty(0, dtype=np.int64)
    doc_of_row = np.empty(len(ids), dtype=np.int64)
    doc_of_row[new_row] = documents
    kept, doc_of_row = np.unique(doc_of_row, return_inverse=True)
    doc_keys = None
    if all(segment.doc_keys is not None for segment in segments):
        every = [key for segment in segments for key in segment.doc_keys or []]
        doc_keys = [every[int(i)] for i in kept]

    vocab: dict[str, int] = {}
    term_parts, row_parts, tf_parts = [], [], []
    doc_len = np.zeros(len(ids), dtype=np.float32)
    for segment, mapping in zip(segments, maps, strict=True):
        global_terms = np.fromiter((vocab.setdefault(t, len(vocab)) for t in segment.vocab), dtype=np.int32,
                                   count=len(segment.vocab))
        rows = mapping[np.asarray(segment.post_rows)]
        keep = rows >= 0
        terms = np.repeat(global_terms, np.asarray(segment.df))
        term_parts.append(terms[keep])
        row_parts.append(rows[keep].astype(np.int32))
        tf_parts.append(np.asarray(segment.post_tf)[keep])
        alive = mapping >= 0
        doc_len[mapping[alive]] = np.asarray(segment.doc_len)[alive]
    postings = (list(vocab), _cat(term_parts, np.int32), _cat(row_parts, np.int32), _cat(tf_parts, np.uint16),
                doc_len)

    vectors: dict[EmbeddingSpace, tuple[np.ndarray, np.ndarray]] = {}
    spaces = {space for segment in segments for space in segment.dense}
    for space in spaces:
        space_rows, space_vectors = [], []
        for segment, mapping in zip(segments, maps, strict=True):
            found = segment.dense.get(space)
            if found is None:
                continue
            rows = mapping[np.asarray(found.rows)]
            keep = rows >= 0
            space_rows.append(rows[keep])
            space_vectors.append(np.asarray(found.vectors)[keep])
        rows = np.concatenate(space_rows)
        by_row = np.argsort(rows, kind="stable")
        vectors[space] = (rows[by_row].astype(np.int32), np.concatenate(space_vectors)[by_row])
    return SegmentData(ids[order], doc_of_row.astype(np.int32), postings=postings, vectors=vectors,
                       doc_keys=doc_keys)


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)

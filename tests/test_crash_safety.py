"""`kill -9` of a `rag sync` at random points: the KB stays searchable at its last commit, the next sync finishes."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from test_sync import RAG, TOPICS, note, visible_chunk_problems

from rag.config import load_settings
from rag.service import RagService

FILES = 40
TRIALS = 4


def writer_is_active(catalog_path: Path, kb: str, committed: int) -> bool:
    """True once the sync process has staged or committed something past ``committed``."""
    db = sqlite3.connect(catalog_path, timeout=30)
    try:
        generation = db.execute("SELECT generation FROM kbs WHERE name=?", (kb,)).fetchone()[0]
        staged = db.execute("SELECT MAX(added_gen) FROM chunks WHERE kb=?", (kb,)).fetchone()[0] or 0
        tombstoned = db.execute("SELECT MAX(deleted_gen) FROM chunks WHERE kb=?", (kb,)).fetchone()[0] or 0
        return max(generation, staged, tombstoned) > committed
    finally:
        db.close()


def edit_folder(folder: Path, rnd: random.Random, revisions: dict[int, int]) -> None:
    """New text in a third of the notes, a few notes deleted, earlier deleted ones back."""
    for i in range(FILES):
        path = folder / f"note-{i:03d}.txt"
        if not path.exists() or rnd.random() < 0.35:
            revisions[i] += 1
            path.write_text(note(i, revisions[i]), encoding="utf-8")
    for i in rnd.sample(range(FILES), 4):
        (folder / f"note-{i:03d}.txt").unlink()


def test_kill_9_during_sync_leaves_a_usable_kb_and_the_next_sync_completes(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    rnd = random.Random(seed)
    folder, home = tmp_path / "docs", tmp_path / "home"
    folder.mkdir()
    revisions = dict.fromkeys(range(FILES), -1)
    for i in range(FILES):
        (folder / f"note-{i:03d}.txt").write_text(note(i), encoding="utf-8")
        revisions[i] = 0
    reader = RagService(load_settings(home=home))
    reader.create_kb("crash")
    env = {**os.environ, "RAG_HOME": str(home), "RAG_INGEST__COMMIT_SECONDS": "0.1",
           "RAG_INGEST__EMBED_BATCH_CHUNKS": "4"}
    kills: list[str] = []

    for trial in range(TRIALS):
        if trial:
            edit_folder(folder, rnd, revisions)
        committed = reader.catalog.generation("crash")
        proc = subprocess.Popen([RAG, "sync", "--kb", "crash", str(folder), "--json"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300  # start-up loads two embedding models (cross-language)
        while proc.poll() is None and not writer_is_active(home / "catalog.sqlite", "crash", committed):
            assert time.monotonic() < deadline, f"seed {seed}: the sync never started writing"
            time.sleep(0.02)
        delay = rnd.uniform(0.0, 2.5)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append(f"trial {trial}: killed {delay:.2f}s into the write")
        else:
            kills.append(f"trial {trial}: finished before the kill")
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]

        context = f"seed {seed}, {kills[-1]}"
        assert visible_chunk_problems(home / "catalog.sqlite", "crash") == [], context
        generation = reader.catalog.generation("crash")
        hits = reader.search("crash", f"{TOPICS[trial]} survey markers", top_k=5)  # must not raise
        assert generation == 0 or hits, context

    print(f"seed {seed}:", "; ".join(kills))  # shown with -s or on failure
    done = subprocess.run([RAG, "sync", "--kb", "crash", str(folder), "--json"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"seed {seed}, {kills}: {done.stderr}"

    on_disk = sorted(p.name for p in folder.iterdir())
    documents = reader.list_documents("crash")
    assert sorted(d.source for d in documents) == on_disk, kills
    assert all(d.status == "indexed" for d in documents)
    for doc in documents:  # each document is the file's latest content, not a version a killed sync left
        assert doc.content_hash == hashlib.sha256((folder / doc.source).read_bytes()).hexdigest(), doc.source
    assert visible_chunk_problems(home / "catalog.sqlite", "crash") == [], kills
    db = sqlite3.connect(home / "catalog.sqlite")
    try:
        generation = db.execute("SELECT generation FROM kbs WHERE name='crash'").fetchone()[0]
        leftovers = db.execute("SELECT COUNT(*) FROM chunks WHERE kb='crash' AND added_gen>?",
                               (generation,)).fetchone()[0]
        visible = db.execute("SELECT COUNT(*) FROM chunks WHERE kb='crash' AND added_gen<=? AND "
                             "(deleted_gen IS NULL OR deleted_gen>?)", (generation, generation)).fetchone()[0]
    finally:
        db.close()
    assert leftovers == 0
    assert visible == sum(d.chunks for d in documents) == len(on_disk)  # one chunk per short note
    assert reader.get_kb("crash").documents == len(on_disk)
    latest = max(revisions[i] for i in range(FILES) if (folder / f"note-{i:03d}.txt").exists())
    probe = next(i for i in range(FILES) if revisions[i] == latest and (folder / f"note-{i:03d}.txt").exists())
    hits = reader.search("crash", f"code{probe}x{latest}", top_k=3, mode="bm25")
    assert hits[0].source == f"note-{probe:03d}.txt", kills
    index = home / "kbs" / "crash"
    manifests = sorted(p.name for p in (index / "manifests").iterdir())
    assert manifests[-1] == f"manifest-{generation:08d}.json" and not any(n.endswith(".tmp") for n in manifests)
    assert not any(p.name.endswith(".tmp") for p in (index / "segments").iterdir())
    reader.catalog.close()


def test_a_snapshot_is_synced_to_disk_before_it_is_renamed_into_place(service, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A power cut cannot be staged here, so this records the order of fsync and rename calls on a real commit.
    events: list[str] = []
    real_fsync, real_rename = os.fsync, Path.rename

    def fsync(descriptor: int) -> None:
        events.append("fsync " + os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    def rename(self: Path, target: Path) -> Path:  # type: ignore[no-untyped-def]
        events.append(f"rename {self} -> {target}")
        return real_rename(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "rename", rename)
    service.create_kb("durable", "")
    folder = Path(service.settings.home) / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Durable\n\nThe snapshot reaches the disk before it is published.\n")
    service.ingest("durable", [folder])
    renames = [i for i, event in enumerate(events) if event.startswith("rename ") and ".tmp -> " in event]
    assert renames, events
    rename_at = renames[-1]
    tmp, target = events[rename_at].removeprefix("rename ").split(" -> ")
    synced_before = {event.removeprefix("fsync ") for event in events[:rename_at] if event.startswith("fsync ")}
    files = {str(p) for p in Path(target).rglob("*") if p.is_file()}
    assert {f.replace(target, tmp, 1) for f in files} <= synced_before and tmp in synced_before
    assert f"fsync {Path(target).parent}" in events[rename_at + 1:]


def test_kill_9_during_a_merge_leaves_the_committed_index(tmp_path: Path) -> None:
    """`rag kb optimize` killed at random points: readers see the same chunks and rankings, a later merge finishes."""
    import numpy as np
    from index_backend_suite import KB, SPACE, Corpus, grow, vector
    from test_index_backend_local import make_backend

    seed = int.from_bytes(os.urandom(4), "little")
    rnd = random.Random(seed)
    home = tmp_path / "home"
    backend = make_backend(home, factor=1000)  # no merge until asked
    corpus = Corpus(seed=seed)
    with backend.writer(KB) as writer:  # one larger segment, so that a merge takes a moment
        for i in range(3000):
            corpus.put(writer, f"bulk{i}")
        writer.commit()
    grow(backend, corpus, commits=25)

    def answers() -> tuple[list[int], list[float], list[int], list[int]]:
        fresh = make_backend(home, factor=1000)
        reader = fresh.reader(KB)
        ids, scores = reader.bm25_top_k(["term1", "term2"], 10)
        # A finished merge may order chunks with exactly equal BM25 scores differently; the ranking is the
        # same up to the order inside ties (as in test_bm25), so ties at the cut are compared by score only.
        rounded = np.round(scores, 4)
        untied = sorted(int(i) for i, score in zip(ids, rounded, strict=True) if score > rounded[-1])
        result = (reader.chunk_ids().tolist(), rounded.tolist(), untied,
                  reader.dense_top_k(SPACE, vector(np.random.default_rng(1)), 10)[0].tolist())
        fresh.catalog.close()
        return result

    expected = answers()
    env = {**os.environ, "RAG_HOME": str(home)}
    kills = []
    for trial in range(3):
        proc = subprocess.Popen([RAG, "kb", "optimize", KB], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        segments = home / "kbs" / KB / "segments"
        while proc.poll() is None and not any(p.name.endswith(".tmp") for p in segments.iterdir()):
            assert time.monotonic() < deadline, f"seed {seed}: the merge never started writing"
            time.sleep(0.005)
        delay = rnd.uniform(0.0, 0.4)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append(f"trial {trial}: killed {delay:.2f}s into the merge")
        else:
            kills.append(f"trial {trial}: finished before the kill")
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
        assert answers() == expected, f"seed {seed}, {kills[-1]}"
        if proc.returncode == 0:
            break
        with backend.writer(KB):  # a writer's open removes what the killed merge left unpublished
            pass
    print(f"seed {seed}:", "; ".join(kills))
    done = subprocess.run([RAG, "kb", "optimize", KB], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"seed {seed}, {kills}: {done.stderr}"
    assert answers()[0] == expected[0]
    manifest = backend.files(KB).latest()
    assert manifest is not None and len(manifest.segments) == 1
    with backend.writer(KB):
        pass
    files = backend.files(KB)
    named = {s.name for g in files.generations() for s in files.read(g).segments}  # type: ignore[union-attr]
    assert manifest.segments[0].name in named  # the previous generation's manifest keeps its segments
    assert {p.name for p in files.segments.iterdir()} == named  # nothing unpublished is left
    backend.catalog.close()

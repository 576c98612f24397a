"""Sync planning (ingest/planning.py) and the migration of catalogs written before origins."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ingest.discovery import SourceFile
from ingest.planning import KnownDocument, SyncStrategy, plan
from rag.config import SyncSource, load_settings
from rag.service import RagService


def _file(source: str) -> SourceFile:
    return SourceFile(Path("/x") / source, source)


def _known(source: str, origin: str, digest: str = "h", indexed: bool = True) -> KnownDocument:
    return KnownDocument(_file(source).doc_id, source, origin, digest, indexed)


KNOWN = [_known("up.md", "upload"), _known("a.md", "sync:A", "old"), _known("gone.md", "sync:A"),
         _known("b.md", "sync:B"), _known("broken.md", "sync:A", indexed=False)]


def test_mirror_deletes_only_its_own_origin_and_refuses_other_origins_names() -> None:
    work = plan("sync:A", SyncStrategy.MIRROR, [_file("a.md"), _file("new.md"), _file("up.md"), _file("broken.md")],
                KNOWN)
    assert [f.source for f in work.files] == ["a.md", "new.md", "broken.md"]
    assert [(r.file.source, "origin 'upload'" in r.reason) for r in work.refused] == [("up.md", True)]
    assert work.delete == [_file("gone.md").doc_id]  # not b.md (sync:B), not up.md (upload)
    assert work.action(_file("a.md"), "old") == "unchanged"
    assert work.action(_file("a.md"), "new") == "update"
    assert work.action(_file("new.md"), "x") == "add"
    assert work.action(_file("broken.md"), "h") == "add" and work.is_new(_file("broken.md"))


def test_upserts_delete_nothing() -> None:
    work = plan("upload", SyncStrategy.UPSERTS, [_file("up.md")], KNOWN)
    assert work.delete == [] and work.refused == [] and not work.is_new(_file("up.md"))


OLD_DOCUMENTS = """CREATE TABLE documents (
    kb TEXT NOT NULL REFERENCES kbs(name) ON DELETE CASCADE, doc_id TEXT NOT NULL, source TEXT NOT NULL, path TEXT,
    format TEXT NOT NULL DEFAULT '', content_hash TEXT, size INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL,
    error TEXT, chunks INTEGER NOT NULL DEFAULT 0, title TEXT, updated_at REAL NOT NULL, PRIMARY KEY (kb, doc_id))"""


def test_older_catalogs_get_origins_from_their_recorded_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    share, nightly, elsewhere = tmp_path / "share", tmp_path / "nightly", tmp_path / "elsewhere"
    db = sqlite3.connect(home / "catalog.sqlite")
    db.execute("CREATE TABLE kbs (name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '', created_at REAL "
               "NOT NULL, generation INTEGER NOT NULL DEFAULT 0)")
    db.execute(OLD_DOCUMENTS)
    db.execute("INSERT INTO kbs(name, created_at) VALUES ('old', ?)", (time.time(),))
    rows = {"up": ("up/a.md", home / "uploads" / "old" / "up" / "a.md"),
            "team": ("x/y.md", share / "team" / "x" / "y.md"),
            "night": ("n.md", nightly / "n.md"),
            "other": ("o.md", elsewhere / "o.md")}
    for doc_id, (source, path) in rows.items():
        db.execute("INSERT INTO documents(kb, doc_id, source, path, status, updated_at) VALUES "
                   "('old', ?, ?, ?, 'indexed', 0)", (doc_id, source, str(path)))
    db.commit()
    db.close()
    settings = load_settings(home=home)
    settings.server.sync_roots = [share]
    settings.sources = [SyncSource(kb="old", folder=nightly, cron="0 2 * * *", name="nightly")]
    service = RagService(settings)
    origins = {doc.doc_id: doc.origin for doc in service.list_documents("old")}
    assert origins == {"up": "upload", "team": "sync:team", "night": "schedule:nightly",
                       "other": f"sync:{elsewhere.resolve().as_posix()}"}
    assert [doc.tags for doc in service.list_documents("old")] == [()] * 4
    assert [d.doc_id for d in service.list_documents("old", origin="sync:team")] == ["team"]
    service.catalog.close()

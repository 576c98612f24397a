"""The engine end to end on a real on-disk KB with the real bundled embedders."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rag.errors import DocumentNotFound, InvalidInput, KBExists, KBNotFound
from tests.conftest import write_sample_docs


def _sources(hits) -> list[str]:  # type: ignore[no-untyped-def]
    return [hit.source for hit in hits]


def test_english_and_chinese_queries_find_their_documents(sample_kb) -> None:  # type: ignore[no-untyped-def]
    service, kb, _ = sample_kb
    hits = service.search(kb, "which hot pot restaurant is the best?", top_k=3)
    assert hits[0].source == "travel/chengdu.md"
    assert "Shu Jiu Xiang" in hits[0].text
    assert hits[0].heading == "Chengdu travel notes > Food"
    zh = service.search(kb, "最好吃的火锅店在哪里？", top_k=3)
    assert zh[0].source == "travel/成都美食.txt"
    assert "蜀九香" in zh[0].text
    vacation = service.search(kb, "how many vacation days do employees get", top_k=3)
    assert vacation[0].source == "handbook/vacation.txt"


def test_scores_are_in_0_1_and_descending(sample_kb) -> None:  # type: ignore[no-untyped-def]
    service, kb, _ = sample_kb
    for mode in ("hybrid", "bm25", "dense"):
        hits = service.search(kb, "luxury hotel near the temple", top_k=5, mode=mode)
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(0 < s <= 1 for s in scores)
    top = service.search(kb, "luxury hotel near the temple", top_k=1)[0]
    assert "Temple House" in top.text
    assert {"bm25", "dense:minilm"} <= top.explain.keys()


def test_kb_names_and_unknown_kbs(service) -> None:  # type: ignore[no-untyped-def]
    service.create_kb("知识库_1")
    with pytest.raises(KBExists):
        service.create_kb("知识库_1")
    for bad in ["", "a/b", "../x", "x" * 65, "has space"]:
        with pytest.raises(InvalidInput):
            service.create_kb(bad)
    with pytest.raises(KBNotFound):
        service.search("missing", "anything")


def test_reingest_is_incremental_and_delete_removes_from_both_indexes(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = write_sample_docs(tmp_path / "docs")
    service.create_kb("kb")
    first = service.ingest("kb", [docs])
    assert (first.added, first.updated, first.unchanged, first.failed) == (3, 0, 0, [])
    embedded = service.catalog.embedding_count()

    again = service.ingest("kb", [docs])
    assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 3, 0)
    assert service.catalog.embedding_count() == embedded

    (docs / "handbook/vacation.txt").write_text("Vacation policy. Employees receive 30 days of paid vacation.")
    changed = service.ingest("kb", [docs])
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, 2)
    hits = service.search("kb", "how many days of paid vacation", top_k=5)
    vacation = [h for h in hits if h.source == "handbook/vacation.txt"]
    assert len(vacation) == 1 and "30 days" in vacation[0].text

    doc_id = vacation[0].doc_id
    chunk_ids = {c.id for c in service.catalog.document_chunks("kb", doc_id)}
    service.delete_document("kb", doc_id)
    assert "handbook/vacation.txt" not in _sources(service.search("kb", "paid vacation days", top_k=10))
    reader = service.index.reader("kb")
    assert not chunk_ids & set(reader.chunk_ids().tolist())
    assert reader.spaces() and reader.count() == service.get_kb("kb").chunks
    with pytest.raises(DocumentNotFound):
        service.get_document("kb", doc_id)
    assert service.get_kb("kb").documents == 2
    assert not list((service.settings.home).rglob("*.pkl"))


def test_failed_update_keeps_the_indexed_version(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "data.json").write_text('{"office": {"city": "Lisbon"}}')
    service.create_kb("kb")
    service.ingest("kb", [folder])
    (folder / "data.json").write_text('{"office": ')
    report = service.ingest("kb", [folder])
    assert report.failed and "invalid JSON" in report.failed[0]["error"]
    document = service.list_documents("kb")[0]
    assert document.status == "indexed" and "previous version kept" in (document.error or "")
    assert service.search("kb", "which city is the office in", top_k=1)[0].text == "office.city: Lisbon"


def test_sync_deletes_documents_whose_files_are_gone(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = write_sample_docs(tmp_path / "docs")
    service.create_kb("kb")
    service.sync("kb", docs)
    (docs / "travel/chengdu.md").unlink()
    report = service.sync("kb", docs)
    assert (report.deleted, report.unchanged) == (1, 2)
    assert "travel/chengdu.md" not in _sources(service.search("kb", "Temple House hotel", top_k=10))
    with sqlite3.connect(service.settings.catalog_path) as db:
        duplicates = db.execute(
            "SELECT doc_id, ordinal, COUNT(*) FROM chunks WHERE kb='kb' AND deleted_gen IS NULL "
            "GROUP BY doc_id, ordinal HAVING COUNT(*) > 1"
        ).fetchall()
    assert duplicates == []


def test_files_parsed_ahead_are_reported_in_order_with_failures_in_place(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(40):  # more than the parse-ahead window, so the background thread runs ahead
        (folder / f"note-{n:02d}.md").write_text(f"# Note {n}\n\nThe locker code for room {n} is {1000 + n}.\n")
    (folder / "note-17.md").write_bytes(b"")
    service.create_kb("ahead")
    seen: list[str] = []
    report = service.ingest("ahead", [folder], progress=lambda done, total, source: seen.append(source))
    assert [Path(source).name for source in seen] == sorted(p.name for p in folder.iterdir())
    assert report.added == 39 and [Path(f["path"]).name for f in report.failed] == ["note-17.md"]
    assert report.formats["md"].seen == 40 and report.formats["md"].indexed == 39
    hit = service.search("ahead", "locker code for room 31", top_k=1)[0]
    assert "1031" in hit.text

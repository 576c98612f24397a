"""A user who grows moves a KB from the embedded default (SQLite catalog, local engine) to a PostgreSQL
catalog and Milvus Lite with `rag kb export` / `rag kb import`, and gets the same search results."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.backup import export_kb, import_kb
from rag.config import load_settings
from rag.service import RagService
from tests.postgres_server import PostgresServer, postgres  # noqa: F401  (fixture)

QUESTIONS = ["How many vacation days do employees get?", "成都最好吃的火锅店在哪里？", "luxury hotel price",
             "火锅 两个人 多少钱"]


def test_a_kb_moves_from_the_embedded_default_to_postgres_and_milvus(
        sample_kb, tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    embedded, kb, _ = sample_kb
    assert not embedded.catalog.postgres and embedded.settings.store.backend == "local"
    archive = tmp_path / "samples.tar.gz"
    export_kb(embedded, kb, archive)

    monkeypatch.setenv("RAG_CATALOG_URL", postgres.create_database())
    monkeypatch.setenv("RAG_STORE__BACKEND", "milvus")
    monkeypatch.setenv("RAG_STORE__MILVUS_URI", str(tmp_path / "milvus.db"))
    grown = RagService(load_settings(home=tmp_path / "grown"))
    try:
        assert grown.catalog.postgres and grown.settings.store.backend == "milvus"
        import_kb(grown, archive)
        before, after = embedded.get_kb(kb), grown.get_kb(kb)
        assert (after.documents, after.chunks) == (before.documents, before.chunks)
        assert [d.source for d in grown.list_documents(kb)] == [d.source for d in embedded.list_documents(kb)]
        for question in QUESTIONS:  # chunk ids are the new catalog's: compare what a user sees
            expected = [(h.source, h.text, round(h.score, 4)) for h in embedded.search(kb, question, top_k=5)]
            got = [(h.source, h.text, round(h.score, 4)) for h in grown.search(kb, question, top_k=5)]
            assert got == expected, question
    finally:
        grown.catalog.close()

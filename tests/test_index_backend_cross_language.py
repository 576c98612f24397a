"""Questions across languages, with the real bundled models: dense spaces are (model, chunk language)."""

from __future__ import annotations

from pathlib import Path

from rag.store.segment import EmbeddingSpace

KETTLE_EN = (
    "Kettle warranty. The electric kettle comes with a two-year warranty from the date of purchase. "
    "Keep the receipt: repairs under warranty need proof of purchase."
)
GARDEN_EN = "Garden care. Water the tomato plants every morning and add compost once a month."
TRAIN_ZH = "火车时刻表。从上海到杭州的高铁每小时一班，全程大约一个小时，二等座票价七十三元。"
TEA_ZH = "绿茶的冲泡方法：水温八十度左右，茶叶三克，浸泡两分钟后即可饮用。"


def test_a_question_in_one_language_finds_a_chunk_in_the_other(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for kb, docs in {"english": {"kettle.txt": KETTLE_EN, "garden.txt": GARDEN_EN},
                     "chinese": {"train.txt": TRAIN_ZH, "tea.txt": TEA_ZH}}.items():
        folder = tmp_path / kb
        folder.mkdir()
        for name, text in docs.items():
            (folder / name).write_text(text, encoding="utf-8")
        service.create_kb(kb)
        service.ingest(kb, [folder])
    # English chunks have a MiniLM and a USE v3 vector; Chinese chunks a USE v3 one (their own model).
    assert set(service.index.reader("english").spaces()) == {EmbeddingSpace("minilm", "en"),
                                                             EmbeddingSpace("usem3", "en")}
    assert service.index.reader("chinese").spaces() == [EmbeddingSpace("usem3", "zh")]

    hits = service.search("english", "水壶的保修期是多久？", top_k=2)
    assert hits[0].source == "kettle.txt", [h.source for h in hits]
    assert "dense:usem3@en" in hits[0].explain and "dense:minilm@en" not in hits[0].explain
    hits = service.search("chinese", "How long does the high-speed train from Shanghai to Hangzhou take?", top_k=2)
    assert hits[0].source == "train.txt", [h.source for h in hits]
    assert "dense:usem3@zh" in hits[0].explain


def test_english_questions_rank_english_chunks_by_the_english_model_only(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kettle.txt").write_text(KETTLE_EN, encoding="utf-8")
    (folder / "garden.txt").write_text(GARDEN_EN, encoding="utf-8")
    service.create_kb("english")
    service.ingest("english", [folder])
    hits = service.search("english", "how long is the kettle warranty", top_k=2, mode="dense")
    assert hits[0].source == "kettle.txt"
    # The English chunks' USE v3 vectors exist but do not vote on an English question.
    assert set(hits[0].explain) == {"dense:minilm"}


def test_no_cross_language_model_means_one_vector_per_chunk(rag_home: Path, tmp_path: Path) -> None:
    from rag.config import load_settings
    from rag.service import RagService

    service = RagService(load_settings(embedding={"cross_language_model": ""}))
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kettle.txt").write_text(KETTLE_EN, encoding="utf-8")
    service.create_kb("plain")
    service.ingest("plain", [folder])
    assert service.index.reader("plain").spaces() == [EmbeddingSpace("minilm", "en")]
    service.catalog.close()

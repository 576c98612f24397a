"""Shared fixtures: an isolated RAG_HOME per test and one small real KB per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLE_DOCS = {
    "travel/chengdu.md": (
        "# Chengdu travel notes\n\n## Food\n\nChengdu is famous for Sichuan hot pot. The best hot pot restaurant "
        "we found is Shu Jiu Xiang on Yulin Road; a dinner for two costs about 260 yuan.\n\n## Hotels\n\n"
        "We stayed at The Temple House, a luxury hotel next to the Daci Temple. A double room costs 1,800 yuan "
        "per night.\n"
    ),
    "travel/成都美食.txt": (
        "成都是四川省的省会，以麻辣火锅闻名。我们认为最好吃的火锅店是玉林路的蜀九香，两个人吃一顿大约两百六十元。\n\n"
        "成都的酒店里，博舍酒店紧邻大慈寺，是一家豪华酒店，双人间每晚一千八百元。"
    ),
    "handbook/vacation.txt": (
        "Vacation policy. Every full-time employee receives 25 days of paid vacation per calendar year. "
        "Unused vacation days can be carried over until March 31 of the following year.\n\n"
        "Sick leave is separate from vacation and requires a doctor's note after three consecutive days."
    ),
}


def write_sample_docs(folder: Path) -> Path:
    for relative, text in SAMPLE_DOCS.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def rag_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "rag-home"
    monkeypatch.setenv("RAG_HOME", str(home))
    monkeypatch.delenv("RAG_CONFIG", raising=False)
    return home


@pytest.fixture
def service(rag_home: Path):  # type: ignore[no-untyped-def]
    from rag.config import load_settings
    from rag.service import RagService

    svc = RagService(load_settings())
    yield svc
    svc.catalog.close()


@pytest.fixture(scope="session")
def sample_kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str, Path]]:
    """A real KB on disk (RAG_HOME in a temp dir) built once from SAMPLE_DOCS: (service, kb name, docs folder)."""
    from rag.config import load_settings
    from rag.service import RagService

    root = tmp_path_factory.mktemp("sample-kb")
    docs = write_sample_docs(root / "docs")
    svc = RagService(load_settings(home=root / "home"))
    svc.create_kb("samples", "test documents")
    svc.ingest("samples", [docs])
    yield svc, "samples", docs
    svc.catalog.close()

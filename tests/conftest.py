"""Shared fixtures: an isolated RAG_HOME per test and one small real KB per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.shared_servers import SharedServers

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test TEST_WORKERS=2` (two xdist workers on two cores): llama.cpp with two threads collapses when another
    # process holds one of the cores, so each worker's LLM (and that of the servers it starts) gets one.
    os.environ.setdefault("RAG_LLM__THREADS", "1")

# Modules that share one session-wide server (tests/ecosystem_server.py) run on the same xdist worker.
XDIST_GROUPS = {module: "ecosystem" for module in ("test_client", "test_dify", "test_langchain_openai",
                                                   "test_langchain_remote", "test_langchain_standard", "test_mcp")}
# Modules on one server of tests/shared_servers.py.
XDIST_GROUPS |= {"test_api_chat": "plain-server", "test_security_browser": "plain-server"}


# The longest groups (about 40 s or more each on 2 cores, measured 2026-12), handed out first so that the two
# workers finish together rather than one waiting on a late long module (`--no-loadscope-reorder` keeps
# this order; xdist would otherwise order the groups by their number of tests). A group not named here
# simply starts later.
LONGEST_FIRST = ("test_schemathesis", "test_llm_transformers", "test_hostile_files", "test_webui", "test_crash_safety",
                 "ecosystem", "test_chat", "plain-server", "test_conversations", "test_cli", "test_formats",
                 "test_api_documents", "test_index_backend_milvus", "test_security", "test_job_control",
                 "test_api_filters", "test_sync", "test_replicas")


def xdist_group(item: pytest.Item) -> str:
    return XDIST_GROUPS.get(item.path.stem, item.path.stem)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` a module's tests stay on one worker (its module-scoped server and KB are
    built once) and the ecosystem modules share a worker; without xdist the marks do nothing."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike, so their collections still match
        rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(xdist_group(item), len(rank)))  # stable: modules stay contiguous

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


@pytest.fixture(scope="session")
def shared_servers() -> Iterator[SharedServers]:
    """The session's shared `rag serve` processes (tests/shared_servers.py), stopped when it ends."""
    servers = SharedServers()
    yield servers
    servers.stop_all()

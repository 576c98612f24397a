"""LangChain over the real server's /v1 with the bundled LLM: ChatOpenAI streaming a kb: answer with its
sources on the final chunk, and the LCEL example of docs/integrations.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from langchain_openai import ChatOpenAI

from rag.integrations.openai_chat import KnowledgeBaseChatOpenAI
from tests.ecosystem_server import READER_HANDBOOK, EcosystemServer, ecosystem_server

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"


@pytest.fixture(scope="module")
def eco() -> EcosystemServer:
    running = ecosystem_server()
    running.server.wait_ready(headers={"Authorization": f"Bearer {READER_HANDBOOK}"})
    return running


def test_chat_openai_streams_sources_in_final_chunk(eco: EcosystemServer) -> None:
    llm = KnowledgeBaseChatOpenAI(base_url=f"{eco.base_url}/v1", api_key=READER_HANDBOOK, model=f"kb:{eco.kb}",
                                  max_tokens=40, temperature=0)
    assert isinstance(llm, ChatOpenAI)
    chunks = list(llm.stream("How many days of paid vacation do employees get?"))
    text = "".join(str(chunk.content) for chunk in chunks)
    assert len(chunks) > 2 and text.strip()
    final = chunks[-1] if chunks[-1].response_metadata.get("finish_reason") else chunks[-2]
    assert final.response_metadata["finish_reason"] == "stop"
    sources = final.response_metadata["sources"]
    assert sources and sources[0]["source"] == "handbook/vacation.txt"
    assert final.response_metadata["grounded"] is True
    assert not any("sources" in chunk.response_metadata for chunk in chunks if chunk is not final)


def lcel_example() -> str:
    match = re.search(r"<!-- lcel-example -->\s*```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match, "docs/integrations.md has no LCEL example block"
    return match.group(1)


def test_lcel_example_runs(eco: EcosystemServer, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAG_URL", eco.base_url)
    monkeypatch.setenv("RAG_API_KEY", READER_HANDBOOK)
    namespace: dict[str, object] = {"__name__": "lcel_example"}
    exec(compile(lcel_example(), str(DOC), "exec"), namespace)  # noqa: S102  (our own documentation)
    answer = namespace["answer"]
    assert isinstance(answer, str) and answer.strip()
    assert answer.strip() in capsys.readouterr().out
    docs = namespace["retriever"].invoke("How many days of paid vacation do employees get?")  # type: ignore[attr-defined]
    assert docs[0].metadata["source"] == "handbook/vacation.txt"

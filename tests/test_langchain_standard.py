"""LangChain's own standard test suites (langchain-tests) on the KB retriever and vector store.

The retriever suite runs twice, in-process and over REST against the real server; the vector store
suite runs in-process with the real bundled embedder, one fresh KB per test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests

from rag.integrations.langchain import KnowledgeBaseRetriever, KnowledgeBaseVectorStore
from tests.ecosystem_server import READER_HANDBOOK, ecosystem_server

pytestmark = pytest.mark.anyio  # the suites' async tests; the sync ones run as usual


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class TestLocalRetrieverStandard(RetrieversIntegrationTests):
    service: Any = None
    kb = ""

    @pytest.fixture(autouse=True)
    def _kb(self, sample_kb: tuple[Any, str, Path]) -> None:
        type(self).service, type(self).kb = sample_kb[0], sample_kb[1]

    @property
    def retriever_constructor(self) -> Any:
        return KnowledgeBaseRetriever.local

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"kb": self.kb, "service": self.service}

    @property
    def retriever_query_example(self) -> str:
        return "How many vacation days does an employee get?"


class TestRemoteRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> Any:
        return KnowledgeBaseRetriever.remote

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        eco = ecosystem_server()
        return {"base_url": eco.base_url, "api_key": READER_HANDBOOK, "kb": eco.kb}

    @property
    def retriever_query_example(self) -> str:
        return "Which hotel is next to the Daci Temple?"


class TestLocalVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, sample_kb: tuple[Any, str, Path]) -> Iterator[KnowledgeBaseVectorStore]:  # type: ignore[override]
        service = sample_kb[0]  # the session's service: its models are loaded already
        kb = f"lc-{uuid.uuid4().hex[:8]}"
        store = KnowledgeBaseVectorStore.local(kb=kb, service=service)  # creates the empty KB
        yield store
        service.delete_kb(kb)

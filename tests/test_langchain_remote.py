"""The LangChain adapters beyond the standard suites: the vector store over REST, a retriever over
several KBs, and the errors a user meets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag.client import RagApiError, RagClient
from rag.errors import KBNotFound
from rag.integrations.langchain import KnowledgeBaseRetriever, KnowledgeBaseVectorStore
from tests.ecosystem_server import ADMIN, READER_HANDBOOK, EcosystemServer, ecosystem_server


@pytest.fixture(scope="module")
def eco() -> EcosystemServer:
    return ecosystem_server()


def test_remote_vector_store(eco: EcosystemServer) -> None:
    store = KnowledgeBaseVectorStore.remote(base_url=eco.base_url, api_key=ADMIN, kb="lc-remote")  # created
    try:
        ids = store.add_texts(["Parking is free on Fridays.", "The canteen serves noodles on Mondays."],
                              ids=["parking", "canteen"])
        assert ids == ["parking", "canteen"]
        best = store.similarity_search("where can I park for free?", k=1)[0]
        assert best.id == "parking" and best.page_content == "Parking is free on Fridays."
        assert best.metadata["source"] == "langchain/parking.txt"  # the server keeps no LangChain metadata

        store.add_texts(["Parking costs two euros on Fridays."], ids=["parking"])  # the same id replaces it
        found = store.similarity_search_with_score("parking price", k=2)
        assert [doc.id for doc, _ in found].count("parking") == 1
        assert next(doc for doc, _ in found if doc.id == "parking").page_content.startswith("Parking costs")
        assert all(0.0 <= score <= 1.0 for _, score in found)

        store.delete(["parking", "no-such-id"])
        assert "parking" not in [doc.id for doc in store.similarity_search("parking", k=5)]
        with pytest.raises(ValueError, match="cannot name an uploaded file"):
            store.add_texts(["x"], ids=["../escape"])
        with pytest.raises(ValueError, match="must not be empty"):
            store.add_texts(["  "])
    finally:
        RagClient(eco.base_url, api_key=ADMIN).delete_kb("lc-remote")


def test_remote_vector_store_respects_the_key(eco: EcosystemServer) -> None:
    with pytest.raises(RagApiError) as denied:  # a reader key may not create a KB
        KnowledgeBaseVectorStore.remote(base_url=eco.base_url, api_key=READER_HANDBOOK, kb="lc-not-allowed")
    assert denied.value.status == 403
    reader_store = KnowledgeBaseVectorStore.remote(base_url=eco.base_url, api_key=READER_HANDBOOK, kb=eco.kb)
    assert reader_store.similarity_search("vacation days", k=1)[0].metadata["source"] == "handbook/vacation.txt"
    with pytest.raises(RagApiError) as role:
        reader_store.add_texts(["A reader cannot add this."])
    assert role.value.status == 403


def test_retriever_over_several_kbs(eco: EcosystemServer) -> None:
    retriever = KnowledgeBaseRetriever.remote(base_url=eco.base_url, api_key=ADMIN, kb=[eco.kb, eco.other_kb], k=3)
    docs = retriever.invoke("Where do the cars park?")
    assert len(docs) == 3
    assert docs[0].metadata["kb"] == eco.other_kb and "level two" in docs[0].page_content
    scores = [doc.metadata["score"] for doc in docs]
    assert scores == sorted(scores, reverse=True)
    assert set(docs[0].metadata) >= {"source", "page", "doc_id", "chunk_id", "score"}
    bm25 = retriever.invoke("garage", k=1, mode="bm25")
    assert len(bm25) == 1 and bm25[0].metadata["source"] == "other/notes.txt"
    with pytest.raises(TypeError, match="unknown search option"):
        retriever.invoke("x", top=3)


def test_local_adapters(sample_kb: tuple[Any, str, Path]) -> None:
    service, kb, _ = sample_kb
    with pytest.raises(KBNotFound):
        KnowledgeBaseRetriever.local(kb="no-such-kb", service=service)
    retriever = KnowledgeBaseRetriever.local(kb=kb, service=service, k=2)
    docs = retriever.invoke("Temple House hotel price")
    assert docs[0].metadata["source"] == "travel/chengdu.md" and "1,800 yuan" in docs[0].page_content
    store = KnowledgeBaseVectorStore.local(kb=kb, service=service)
    hit = store.similarity_search("Temple House hotel price", k=1)[0]
    assert hit.id == "travel/chengdu.md"  # a document that came in by ingest: its id is its source
    assert store.get_by_ids(["travel/chengdu.md"])[0].page_content.count("Temple House") == 1
    as_retriever = store.as_retriever(search_kwargs={"k": 1})
    assert as_retriever.invoke("vacation days")[0].id == "handbook/vacation.txt"

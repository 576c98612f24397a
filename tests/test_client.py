"""rag.client against the real server: a full round trip (KB, upload with progress, job, search, chat
stream, delete), the async twin, and errors as typed RagApiError."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rag.api.schemas import ChatResponse, HitOut, IngestResult, JobAccepted, KBOut, SearchResponse
from rag.client import AsyncRagClient, RagApiError, RagClient
from tests.ecosystem_server import ADMIN, READER_HANDBOOK, EcosystemServer, ecosystem_server


@pytest.fixture(scope="module")
def eco() -> EcosystemServer:
    return ecosystem_server()


def test_round_trip(eco: EcosystemServer, tmp_path: Path) -> None:
    policy = tmp_path / "expenses.md"
    policy.write_text("# Expenses\n\nTaxi receipts are reimbursed up to 80 euros per trip within 30 days.\n",
                      encoding="utf-8")
    sent: list[tuple[int, int]] = []
    job_progress: list[tuple[int, int]] = []
    with RagClient(eco.base_url, api_key=ADMIN) as client:
        created = client.create_kb("client-trip", "made by the client test")
        assert isinstance(created, KBOut) and created.name == "client-trip" and created.documents == 0
        assert "client-trip" in [kb.name for kb in client.list_kbs()]

        accepted = client.upload("client-trip", [policy, ("notes/parking.txt", b"Parking is free on Fridays.")],
                                 progress=lambda done, total: sent.append((done, total)))
        assert isinstance(accepted, JobAccepted) and accepted.files == ["expenses.md", "notes/parking.txt"]
        total = policy.stat().st_size + len(b"Parking is free on Fridays.")
        assert sent and sent[-1] == (total, total)  # every byte of both files went out
        job = client.wait_for_job(accepted.job_id, timeout=120,
                                  progress=lambda done, total: job_progress.append((done, total)))
        assert job.status == "succeeded", job.error
        assert job.result is not None and job.result["added"] == 2
        assert job_progress[-1] == (2, 2)

        documents = {doc.source: doc for doc in client.list_documents("client-trip")}
        assert set(documents) == {"expenses.md", "notes/parking.txt"}
        assert all(doc.status == "indexed" and doc.chunks >= 1 for doc in documents.values())
        assert client.get_document("client-trip", documents["expenses.md"].doc_id).source == "expenses.md"

        result = client.search("client-trip", "how much is a taxi reimbursed?", top_k=2)
        assert isinstance(result, SearchResponse) and isinstance(result.hits[0], HitOut)
        assert result.hits[0].source == "expenses.md" and "80 euros" in result.hits[0].text
        assert client.search("client-trip", "taxi", top_k=1, mode="bm25").hits[0].source == "expenses.md"

        report = client.upload("client-trip", [("extra.txt", b"An extra note about lunch vouchers.")], wait=True)
        assert isinstance(report, IngestResult) and report.added == 1
        extra = next(doc for doc in client.list_documents("client-trip") if doc.source == "extra.txt")
        assert client.delete_document("client-trip", extra.doc_id).deleted
        assert "extra.txt" not in [doc.source for doc in client.list_documents("client-trip")]

        assert client.delete_kb("client-trip").deleted
        assert "client-trip" not in [kb.name for kb in client.list_kbs()]


def test_chat_stream_tokens_then_sources(eco: EcosystemServer) -> None:
    eco.server.wait_ready(headers={"Authorization": f"Bearer {ADMIN}"})
    with RagClient(eco.base_url, api_key=READER_HANDBOOK) as client:
        with client.chat_stream(eco.kb, "How many days of paid vacation do employees get?", max_tokens=40) as stream:
            tokens = list(stream)
        assert tokens and all(isinstance(token, str) for token in tokens)
        assert any(hit.source == "handbook/vacation.txt" for hit in stream.sources)
        response = stream.response
        assert isinstance(response, ChatResponse) and response.grounded
        assert response.citations[0].source == "handbook/vacation.txt"
        assert "".join(tokens).strip() in response.answer


def test_async_client_round_trip(eco: EcosystemServer) -> None:
    async def scenario() -> tuple[list[str], SearchResponse, list[str]]:
        async with AsyncRagClient(eco.base_url, api_key=ADMIN) as client:
            await client.create_kb("client-async")
            accepted = await client.upload("client-async", [("a.txt", b"The library opens at nine.")])
            assert isinstance(accepted, JobAccepted)
            job = await client.wait_for_job(accepted.job_id, timeout=120)
            assert job.status == "succeeded", job.error
            documents = [doc.source for doc in await client.list_documents("client-async")]
            found = await client.search("client-async", "when does the library open?", top_k=1)
            await client.delete_kb("client-async")
            return documents, found, [kb.name for kb in await client.list_kbs()]

    documents, found, kbs_after = asyncio.run(scenario())
    assert documents == ["a.txt"]
    assert found.hits[0].text.startswith("The library opens at nine")
    assert "client-async" not in kbs_after


def test_errors_are_typed(eco: EcosystemServer) -> None:
    with RagClient(eco.base_url, api_key=ADMIN) as client:
        with pytest.raises(RagApiError) as missing:
            client.search("no-such-kb", "anything")
        assert missing.value.status == 404 and missing.value.code == "kb_not_found"
        with pytest.raises(RagApiError) as invalid:
            client.create_kb("bad name!")
        assert invalid.value.status == 422
    with RagClient(eco.base_url, api_key="not-a-key") as client, pytest.raises(RagApiError) as denied:
        client.list_kbs()
    assert denied.value.status == 401 and denied.value.code == "unauthorized"
    with RagClient(eco.base_url, api_key=READER_HANDBOOK) as client:
        assert [kb.name for kb in client.list_kbs()] == [eco.kb]  # the key's KB limit applies
        with pytest.raises(RagApiError) as forbidden:
            client.search(eco.other_kb, "parking")
        assert forbidden.value.status == 403
        with pytest.raises(RagApiError) as role:
            client.upload(eco.kb, [("x.txt", b"x")])
        assert role.value.status == 403
    with RagClient(eco.base_url) as client, pytest.raises(RagApiError) as keyless:
        client.list_kbs()
    assert keyless.value.status == 401

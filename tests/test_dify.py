"""Dify's External Knowledge API on the real server, with the requests exactly as Dify sends them:
``POST {endpoint}/retrieval``, ``Content-Type: application/json``, ``Authorization: Bearer KEY`` and a
``json.dumps`` body (retrieval_setting, query, knowledge_id, and metadata_condition only when set);
the endpoint check when the API is added in Dify is the same POST with the key and no body."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.ecosystem_server import ADMIN, READER_HANDBOOK, EcosystemServer, ecosystem_server


@pytest.fixture(scope="module")
def eco() -> EcosystemServer:
    return ecosystem_server()


def dify_request(eco: EcosystemServer, api_key: str | None, knowledge_id: str, query: str, top_k: int = 3,
                 score_threshold: float = 0.0, metadata_condition: dict[str, Any] | None = None) -> httpx.Response:
    """What Dify's ExternalDatasetService.fetch_external_knowledge_retrieval sends."""
    params: dict[str, Any] = {"retrieval_setting": {"top_k": top_k, "score_threshold": score_threshold},
                              "query": query, "knowledge_id": knowledge_id}
    if metadata_condition:
        params["metadata_condition"] = metadata_condition
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.post(f"{eco.base_url}/retrieval", content=json.dumps(params), headers=headers, timeout=60)


def test_records(eco: EcosystemServer) -> None:
    response = dify_request(eco, READER_HANDBOOK, eco.kb, "How many days of paid vacation per year?", top_k=2)
    assert response.status_code == 200, response.text
    records = response.json()["records"]
    assert 1 <= len(records) <= 2
    best = records[0]
    assert set(best) == {"content", "score", "title", "metadata"}
    assert "25 days of paid vacation" in best["content"]
    assert best["title"] == "handbook/vacation.txt"
    assert isinstance(best["metadata"], dict) and best["metadata"]["source"] == "handbook/vacation.txt"
    assert best["metadata"]["kb"] == eco.kb and isinstance(best["metadata"]["doc_id"], str)
    assert all(record["metadata"] is not None for record in records)
    assert all(0.0 <= record["score"] <= 1.0 for record in records)
    assert [record["score"] for record in records] == sorted((r["score"] for r in records), reverse=True)


def test_score_threshold(eco: EcosystemServer) -> None:
    everything = dify_request(eco, READER_HANDBOOK, eco.kb, "hot pot restaurant in Chengdu", top_k=10).json()
    assert len(everything["records"]) >= 3  # 0.0: no threshold
    scores = [record["score"] for record in everything["records"]]
    cutoff = round((scores[0] + scores[-1]) / 2, 4)  # between the best and the worst record
    strict = dify_request(eco, READER_HANDBOOK, eco.kb, "hot pot restaurant in Chengdu", top_k=10,
                          score_threshold=cutoff).json()
    expected = [r for r in everything["records"] if r["score"] >= cutoff]
    assert strict["records"] == expected and 1 <= len(expected) < len(everything["records"])


def test_metadata_condition(eco: EcosystemServer) -> None:
    travel_only = {"logical_operator": "and",
                   "conditions": [{"name": ["source"], "comparison_operator": "start with", "value": "travel/"}]}
    response = dify_request(eco, READER_HANDBOOK, eco.kb, "vacation days and hotels", top_k=5,
                            metadata_condition=travel_only)
    assert response.status_code == 200, response.text
    records = response.json()["records"]
    assert records and all(r["metadata"]["source"].startswith("travel/") for r in records)

    either = {"logical_operator": "or", "conditions": [
        {"name": "source", "comparison_operator": "end with", "value": ".md"},
        {"name": "source", "comparison_operator": "is", "value": "handbook/vacation.txt"}]}
    sources = {r["metadata"]["source"] for r in
               dify_request(eco, READER_HANDBOOK, eco.kb, "hotel vacation", top_k=10, metadata_condition=either)
               .json()["records"]}
    assert sources == {"travel/chengdu.md", "handbook/vacation.txt"}

    nothing = {"logical_operator": "and",
               "conditions": [{"name": ["source"], "comparison_operator": "contains", "value": "no-such-file"}]}
    response = dify_request(eco, READER_HANDBOOK, eco.kb, "hotel", metadata_condition=nothing)
    assert response.status_code == 200 and response.json() == {"records": []}


def test_empty_kb_has_no_records(eco: EcosystemServer) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert httpx.post(f"{eco.base_url}/api/kbs", json={"name": "dify-empty"}, headers=admin).status_code == 201
    try:
        response = dify_request(eco, ADMIN, "dify-empty", "anything at all")
        assert response.status_code == 200 and response.json() == {"records": []}
    finally:
        httpx.delete(f"{eco.base_url}/api/kbs/dify-empty", headers=admin)


def test_errors(eco: EcosystemServer) -> None:
    missing_header = dify_request(eco, None, eco.kb, "vacation")
    assert missing_header.status_code == 403
    assert missing_header.json()["error_code"] == 1001 and "Bearer" in missing_header.json()["error_msg"]
    basic = httpx.post(f"{eco.base_url}/retrieval", headers={"Authorization": f"Basic {ADMIN}"},
                       content=json.dumps({"knowledge_id": eco.kb, "query": "x",
                                           "retrieval_setting": {"top_k": 1, "score_threshold": 0.0}}))
    assert basic.status_code == 403 and basic.json()["error_code"] == 1001

    wrong_key = dify_request(eco, "not-a-key", eco.kb, "vacation")
    assert wrong_key.status_code == 403 and wrong_key.json()["error_code"] == 1002
    other_kb = dify_request(eco, READER_HANDBOOK, eco.other_kb, "parking")  # the key is limited to handbook
    assert other_kb.status_code == 403 and other_kb.json()["error_code"] == 1002

    unknown = dify_request(eco, ADMIN, "no-such-knowledge", "vacation")
    assert unknown.status_code == 404
    assert unknown.json() == {"error_code": 2001, "error_msg": "The knowledge does not exist: 'no-such-knowledge'."}

    bad = httpx.post(f"{eco.base_url}/retrieval", headers={"Authorization": f"Bearer {ADMIN}"},
                     json={"knowledge_id": eco.kb, "query": "x", "retrieval_setting": {"top_k": 0}})
    assert bad.status_code == 422 and "top_k" in bad.json()["error_msg"]


def test_dify_endpoint_check(eco: EcosystemServer) -> None:
    """Adding the API in Dify posts the key and no body: a 403 means a bad key; a good key must not get
    403, 404 or 502 (Dify reads those as a bad key, a wrong URL and an unreachable server)."""
    good = httpx.post(f"{eco.base_url}/retrieval", headers={"Authorization": f"Bearer {READER_HANDBOOK}"})
    assert good.status_code not in (403, 404, 502) and good.status_code == 422
    bad = httpx.post(f"{eco.base_url}/retrieval", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 403 and bad.json()["error_code"] == 1002

"""The real server on localhost: KBs, uploads as jobs, search, deletes, sync, errors, metrics (no LLM needed)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator

import pytest
import requests
from api_server import RunningServer, start_server, wait_for_job
from office_files import docx_bytes

MAX_FILE_MB = 0.25
MAX_REQUEST_MB = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("api-docs") / "home"
    running = start_server(home, {"RAG_SERVER__MAX_FILE_MB": str(MAX_FILE_MB),
                                  "RAG_SERVER__MAX_REQUEST_MB": str(MAX_REQUEST_MB),
                                  "RAG_SERVER__SYNC_ROOTS": json.dumps([str(home.parent / "shares")])})
    yield running
    running.stop()


def create_kb(server: RunningServer, name: str, description: str = "") -> requests.Response:
    return requests.post(f"{server.base_url}/api/kbs", json={"name": name, "description": description}, timeout=30)


def upload(server: RunningServer, kb: str, files: list[tuple[str, bytes]], **params: str) -> requests.Response:
    parts = [("files", (name, io.BytesIO(data))) for name, data in files]
    return requests.post(f"{server.base_url}/api/kbs/{kb}/documents", files=parts, params=params, timeout=120)


def ingest(server: RunningServer, kb: str, files: list[tuple[str, bytes]]) -> dict[str, object]:
    response = upload(server, kb, files)
    assert response.status_code == 202, response.text
    job = wait_for_job(server.base_url, response.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


def search(server: RunningServer, kb: str, query: str, top_k: int = 5) -> list[dict[str, object]]:
    response = requests.post(f"{server.base_url}/api/kbs/{kb}/search", json={"query": query, "top_k": top_k},
                             timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["hits"]  # type: ignore[no-any-return]


def assert_error(response: requests.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert response.headers["X-Request-ID"] == error["request_id"]
    return error  # type: ignore[no-any-return]


def test_kb_crud(server: RunningServer) -> None:
    created = create_kb(server, "crud-kb", "for the CRUD test")
    assert created.status_code == 201
    assert created.json()["name"] == "crud-kb" and created.json()["documents"] == 0
    assert_error(create_kb(server, "crud-kb"), 409, "kb_exists")
    unicode_kb = create_kb(server, "知识库_1")
    assert unicode_kb.status_code == 201, unicode_kb.text

    names = [kb["name"] for kb in requests.get(f"{server.base_url}/api/kbs", timeout=30).json()["kbs"]]
    assert {"crud-kb", "知识库_1"} <= set(names)
    got = requests.get(f"{server.base_url}/api/kbs/crud-kb", timeout=30).json()
    assert got["description"] == "for the CRUD test"

    assert requests.delete(f"{server.base_url}/api/kbs/crud-kb", timeout=30).json() == {"name": "crud-kb",
                                                                                         "deleted": True}
    assert_error(requests.get(f"{server.base_url}/api/kbs/crud-kb", timeout=30), 404, "kb_not_found")
    assert_error(requests.delete(f"{server.base_url}/api/kbs/crud-kb", timeout=30), 404, "kb_not_found")


@pytest.mark.parametrize("name", ["bad name", "a/b", "x" * 65, "", "dot.dot"])
def test_bad_kb_names_are_422(server: RunningServer, name: str) -> None:
    assert_error(create_kb(server, name), 422, "invalid_input")


def test_upload_several_formats_then_search_and_delete(server: RunningServer) -> None:
    assert create_kb(server, "formats").status_code == 201
    files = [
        ("notes.md", b"# Garden notes\n\nThe tomatoes are watered every Tuesday morning.\n"),
        ("plain.txt", b"The office coffee machine is descaled on the first Monday of the month."),
        ("page.html", b"<html><body><h1>Parking</h1><p>Visitors park in the blue zone behind "
                      b"building C.</p></body></html>"),
        ("prices.csv", b"product,price\nhoneycrisp apples,4.20\nsourdough bread,6.50\n"),
        ("report.docx", docx_bytes(["Revenue of the zeppelin division grew by 17 percent in the third quarter."],
                                   heading="Quarterly report")),
    ]
    response = upload(server, "formats", files)
    assert response.status_code == 202, response.text
    assert response.json()["files"] == [name for name, _ in files]
    job = wait_for_job(server.base_url, response.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"done": 5, "total": 5}
    assert job["result"]["added"] == 5 and job["result"]["failed"] == []

    documents = requests.get(f"{server.base_url}/api/kbs/formats/documents", timeout=30).json()["documents"]
    assert sorted(d["source"] for d in documents) == sorted(name for name, _ in files)
    assert all(d["status"] == "indexed" and d["chunks"] >= 1 for d in documents)

    expectations = {"zeppelin division revenue": "report.docx", "where do visitors park": "page.html",
                    "sourdough bread price": "prices.csv", "when are the tomatoes watered": "notes.md"}
    for query, source in expectations.items():
        assert search(server, "formats", query)[0]["source"] == source, query

    report = next(d for d in documents if d["source"] == "report.docx")
    got = requests.get(f"{server.base_url}/api/kbs/formats/documents/{report['doc_id']}", timeout=30)
    assert got.status_code == 200 and got.json()["format"] == "docx"

    deleted = requests.delete(f"{server.base_url}/api/kbs/formats/documents/{report['doc_id']}", timeout=60)
    assert deleted.status_code == 200, deleted.text
    # Gone from search the moment the delete returned: no polling, no waiting.
    assert all(hit["doc_id"] != report["doc_id"] for hit in search(server, "formats", "zeppelin division revenue"))
    assert_error(requests.get(f"{server.base_url}/api/kbs/formats/documents/{report['doc_id']}", timeout=30),
                 404, "document_not_found")
    assert_error(requests.delete(f"{server.base_url}/api/kbs/formats/documents/{report['doc_id']}", timeout=30),
                 404, "document_not_found")


def test_bad_file_is_reported_per_file(server: RunningServer) -> None:
    assert create_kb(server, "mixed").status_code == 201
    job = ingest(server, "mixed", [("good.txt", b"Lighthouse keepers log the weather every four hours."),
                                   ("broken.docx", b"this is not a zip archive")])
    result = job["result"]
    assert result["added"] == 1
    assert [failure["path"] for failure in result["failed"]] == ["broken.docx"]
    assert result["failed"][0]["error"]


def test_upload_with_wait_answers_201_with_the_report(server: RunningServer) -> None:
    assert create_kb(server, "waited").status_code == 201
    web_page = b"<!DOCTYPE html><html><body><p>Divers surface every forty minutes.</p></body></html>"
    response = upload(server, "waited", [("w.txt", b"Submarine crews rotate every six weeks."),
                                         ("saved-from-browser.doc", web_page)], wait="true")
    assert response.status_code == 201, response.text
    assert response.json()["added"] == 2 and response.json()["kb"] == "waited"
    assert response.json()["recovered"] == [
        {"path": "saved-from-browser.doc", "note": "content is HTML, though the name says .doc"}]
    documents = requests.get(f"{server.base_url}/api/kbs/waited/documents", timeout=30).json()["documents"]
    notes = {doc["source"]: doc["note"] for doc in documents}
    assert notes == {"w.txt": None, "saved-from-browser.doc": "content is HTML, though the name says .doc"}


def test_traversal_filename_stays_inside_the_kb(server: RunningServer) -> None:
    assert create_kb(server, "safe").status_code == 201
    evil = "../../../escaped-secret.md"
    response = upload(server, "safe", [(evil, b"# Escape\n\nThe password vault lives on floor nine.")])
    assert response.status_code == 202, response.text
    assert response.json()["files"] == ["escaped-secret.md"]
    assert wait_for_job(server.base_url, response.json()["job_id"])["status"] == "succeeded"
    uploads = server.home / "uploads" / "safe"
    assert (uploads / "escaped-secret.md").is_file()
    written = [p for p in server.home.parent.rglob("escaped-secret.md")]
    assert written == [uploads / "escaped-secret.md"], written
    assert not (server.home.parent.parent / "escaped-secret.md").exists()
    sources = [d["source"] for d in requests.get(f"{server.base_url}/api/kbs/safe/documents", timeout=30).json()[
        "documents"]]
    assert sources == ["escaped-secret.md"]


def test_size_limits_are_413(server: RunningServer) -> None:
    assert create_kb(server, "limits").status_code == 201
    big = b"x" * int(MAX_FILE_MB * 1024 * 1024 + 10)
    error = assert_error(upload(server, "limits", [("big.txt", big)]), 413, "payload_too_large")
    assert "big.txt" in error["message"]
    under_file_limit = b"y" * int(MAX_FILE_MB * 1024 * 1024 - 100)
    many = [(f"part{i}.txt", under_file_limit) for i in range(5)]  # 5 x 0.25 MB > 1 MB per request
    assert_error(upload(server, "limits", many), 413, "payload_too_large")
    assert requests.get(f"{server.base_url}/api/kbs/limits/documents", timeout=30).json()["documents"] == []


def test_concurrent_uploads_to_one_kb_all_land(server: RunningServer) -> None:
    assert create_kb(server, "busy").status_code == 201
    job_ids: list[str] = []

    def send(i: int) -> None:
        response = upload(server, "busy", [(f"batch{i}-{j}.txt", f"Batch {i} item {j}: codeword kiwi{i}x{j}.".encode())
                                           for j in range(3)])
        assert response.status_code == 202
        job_ids.append(response.json()["job_id"])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(job_ids) == 4
    assert all(wait_for_job(server.base_url, job_id)["status"] == "succeeded" for job_id in job_ids)
    kb = requests.get(f"{server.base_url}/api/kbs/busy", timeout=30).json()
    assert kb["documents"] == 12 and kb["chunks"] == 12
    assert search(server, "busy", "kiwi2x1", top_k=1)[0]["source"] == "batch2-1.txt"


def test_sync_mirrors_a_folder(server: RunningServer) -> None:
    assert create_kb(server, "synced").status_code == 201
    folder = server.home.parent / "shares" / "share"  # inside the server's sync root
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Alpacas are shorn in late spring.", encoding="utf-8")
    (folder / "sub" / "b.md").write_text("# Bees\n\nThe hives are inspected weekly.", encoding="utf-8")
    first = requests.post(f"{server.base_url}/api/kbs/synced/sync", json={"source": str(folder)}, timeout=30)
    assert first.status_code == 202, first.text
    job = wait_for_job(server.base_url, first.json()["job_id"])
    assert job["status"] == "succeeded" and job["kind"] == "sync" and job["result"]["added"] == 2

    (folder / "a.txt").unlink()
    second = requests.post(f"{server.base_url}/api/kbs/synced/sync", json={"source": str(folder)}, timeout=30)
    result = wait_for_job(server.base_url, second.json()["job_id"])["result"]
    assert result["deleted"] == 1 and result["unchanged"] == 1
    assert [d["source"] for d in requests.get(f"{server.base_url}/api/kbs/synced/documents", timeout=30).json()[
        "documents"]] == ["sub/b.md"]
    missing = requests.post(f"{server.base_url}/api/kbs/synced/sync", json={"source": str(folder.parent / "nope")},
                            timeout=30)
    assert "not a folder inside server.sync_roots" in assert_error(missing, 403, "forbidden")["message"]


def test_not_found_and_validation_errors(server: RunningServer) -> None:
    base = server.base_url
    assert create_kb(server, "errs").status_code == 201
    assert_error(requests.get(f"{base}/api/kbs/nope/documents", timeout=30), 404, "kb_not_found")
    assert_error(requests.post(f"{base}/api/kbs/nope/search", json={"query": "x"}, timeout=30), 404, "kb_not_found")
    assert_error(upload(server, "nope", [("a.txt", b"a")]), 404, "kb_not_found")
    assert_error(requests.post(f"{base}/api/kbs/nope/chat", json={"messages": [{"role": "user", "content": "hi"}]},
                               timeout=30), 404, "kb_not_found")
    assert_error(requests.get(f"{base}/api/kbs/errs/documents/0123456789abcdef", timeout=30), 404,
                 "document_not_found")
    assert_error(requests.get(f"{base}/api/jobs/does-not-exist", timeout=30), 404, "job_not_found")
    assert_error(requests.get(f"{base}/no/such/route", timeout=30), 404, "not_found")

    missing_query = assert_error(requests.post(f"{base}/api/kbs/errs/search", json={"top_k": 3}, timeout=30),
                                 422, "validation_error")
    assert "query" in missing_query["message"]
    assert "top_k" in assert_error(requests.post(f"{base}/api/kbs/errs/search", json={"query": "a", "top_k": 0},
                                                 timeout=30), 422)["message"]
    assert_error(requests.post(f"{base}/api/kbs/errs/search", data="not json",
                               headers={"Content-Type": "application/json"}, timeout=30), 422)
    assert_error(requests.post(f"{base}/api/kbs/errs/chat", json={"messages": []}, timeout=30), 422)
    assert_error(requests.post(f"{base}/api/kbs/errs/chat", json={"messages": [{"role": "assistant", "content": "x"}]},
                               timeout=30), 422, "invalid_input")
    assert_error(requests.post(f"{base}/api/kbs/errs/documents", timeout=30), 422, "validation_error")
    request_id = "trace-me-123"
    echoed = requests.get(f"{base}/api/kbs/nope", headers={"X-Request-ID": request_id}, timeout=30)
    assert echoed.headers["X-Request-ID"] == request_id and echoed.json()["error"]["request_id"] == request_id


def test_openai_models_and_embeddings(server: RunningServer) -> None:
    import numpy as np
    import openai

    assert create_kb(server, "oai-models").status_code == 201
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    ids = [model.id for model in client.models.list()]
    assert "kb:oai-models" in ids

    single = client.embeddings.create(model="minilm", input="hello world")  # the client asks for base64
    assert len(single.data) == 1 and len(single.data[0].embedding) == 384
    floats = client.embeddings.create(model="minilm", input=["cats purr", "kittens purr", "stock markets"],
                                      encoding_format="float")
    vectors = np.array([item.embedding for item in floats.data])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert np.allclose(np.array(single.data[0].embedding), np.array(
        client.embeddings.create(model="minilm", input=["hello world"], encoding_format="float").data[0].embedding),
        atol=1e-5)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model="minilm", input=[])


def test_health_readiness_docs_ui_and_metrics(server: RunningServer) -> None:
    base = server.base_url
    assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
    ready = server.wait_ready()
    assert ready["catalog"] and ready["embeddings"] and ready["llm"]
    docs = requests.get(f"{base}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = requests.get(f"{base}/openapi.json", timeout=10).json()["paths"]
    assert {"/api/kbs/{kb}/documents", "/v1/chat/completions", "/api/jobs/{job_id}"} <= set(paths)
    assert requests.get(f"{base}/ui/", timeout=30).status_code == 200

    assert create_kb(server, "metered").status_code == 201
    ingest(server, "metered", [("m.txt", b"Metrics are scraped every fifteen seconds.")])
    search(server, "metered", "scrape interval")
    metrics = requests.get(f"{base}/metrics", timeout=10)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'rag_http_requests_total{method="POST",route="/api/kbs/{kb}/search",status="200"}' in text
    assert 'rag_http_request_duration_seconds_count{method="POST",route="/api/kbs/{kb}/search"}' in text
    assert "rag_search_duration_seconds_count" in text
    assert 'rag_ingest_duration_seconds_count{kind="ingest"}' in text
    assert 'rag_jobs_total{kind="ingest",status="succeeded"}' in text
    assert "/api/kbs/metered" not in text  # one series per route template, not per KB

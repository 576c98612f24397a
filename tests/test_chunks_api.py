"""What was indexed, over the real server: a document's chunks in order, and its stored original."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import requests
from api_server import RunningServer, start_server

KEYS = {"admin": "adm-chk-1234", "reader": "rdr-chk-5678", "other": "oth-chk-9012"}
RAG_API_KEYS = f"{KEYS['admin']}:admin;{KEYS['reader']}:reader;{KEYS['other']}:reader:elsewhere"
GUIDE = ("# Travel guide\n\n## Food\n\nChengdu is famous for Sichuan hot pot. " + "Hot pot is spicy. " * 120
         + "\n\n## Hotels\n\nThe Temple House is next to the Daci Temple. A double room costs 1,800 yuan.\n")


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    running = start_server(tmp_path_factory.mktemp("chunks") / "home", {"RAG_API_KEYS": RAG_API_KEYS})
    base = running.base_url
    assert requests.post(f"{base}/api/kbs", json={"name": "travel"}, headers=auth("admin"), timeout=30).status_code == 201
    files = [("files", ("guides/chengdu.md", io.BytesIO(GUIDE.encode())))]
    uploaded = requests.post(f"{base}/api/kbs/travel/documents?wait=true", files=files, headers=auth("admin"),
                             timeout=300)
    assert uploaded.status_code == 201, uploaded.text
    [doc] = requests.get(f"{base}/api/kbs/travel/documents", headers=auth("admin"), timeout=30).json()["documents"]
    yield running, doc["doc_id"]
    running.stop()


def test_chunks_in_document_order_with_pages_headings_and_tokens(server: tuple[RunningServer, str]) -> None:
    running, doc_id = server
    response = requests.get(f"{running.base_url}/api/kbs/travel/documents/{doc_id}/chunks", headers=auth("reader"),
                            timeout=30)
    assert response.status_code == 200, response.text
    chunks = response.json()["chunks"]
    assert len(chunks) >= 2  # the long Food section does not fit one chunk
    assert [c["order"] for c in chunks] == sorted(c["order"] for c in chunks)
    assert set(chunks[0]) == {"chunk_id", "order", "text", "page", "heading", "tokens"}
    assert all(c["page"] is None and c["tokens"] > 0 for c in chunks)  # Markdown has no pages
    assert any("Food" in (c["heading"] or "") for c in chunks) and "1,800 yuan" in chunks[-1]["text"]
    document = requests.get(f"{running.base_url}/api/kbs/travel/documents/{doc_id}", headers=auth("reader"),
                            timeout=30).json()
    assert document["chunks"] == len(chunks)
    # The chunk ids are the ones search hits carry.
    hits = requests.post(f"{running.base_url}/api/kbs/travel/search", json={"query": "Temple House double room"},
                         headers=auth("reader"), timeout=60).json()["hits"]
    assert hits[0]["chunk_id"] in {c["chunk_id"] for c in chunks}


def test_the_uploaded_original_comes_back_byte_for_byte(server: tuple[RunningServer, str]) -> None:
    running, doc_id = server
    response = requests.get(f"{running.base_url}/api/kbs/travel/documents/{doc_id}/file", headers=auth("reader"),
                            timeout=30)
    assert response.status_code == 200, response.text
    assert response.content == GUIDE.encode()
    assert response.headers["content-disposition"].startswith("attachment")
    assert "chengdu.md" in response.headers["content-disposition"]
    assert response.headers["content-type"] == "application/octet-stream"  # never rendered as a page


def test_unknown_documents_and_other_kbs_are_refused(server: tuple[RunningServer, str]) -> None:
    running, doc_id = server
    base = running.base_url
    for path in ("chunks", "file"):
        missing = requests.get(f"{base}/api/kbs/travel/documents/nope/{path}", headers=auth("reader"), timeout=30)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "document_not_found"
        limited = requests.get(f"{base}/api/kbs/travel/documents/{doc_id}/{path}", headers=auth("other"), timeout=30)
        assert limited.status_code == 403
        assert requests.get(f"{base}/api/kbs/travel/documents/{doc_id}/{path}", timeout=30).status_code == 401
        assert requests.get(f"{base}/api/kbs/nokb/documents/{doc_id}/{path}", headers=auth("reader"),
                            timeout=30).status_code == 404

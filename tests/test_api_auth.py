"""API keys on the real server: 401 without or with a wrong key, 403 for the wrong role or KB."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import requests
from api_server import RunningServer, start_server, wait_for_job

KEYS = {
    "admin": "adm-9f8e7d6c5b4a",
    "writer": "wrt-1a2b3c4d5e6f",
    "reader": "rdr-0011223344",
    "alpha_reader": "alpha-rdr-5566778899",
}
RAG_API_KEYS = ";".join([f"{KEYS['admin']}:admin", f"{KEYS['writer']}:writer", f"{KEYS['reader']}:reader",
                         f"{KEYS['alpha_reader']}:reader:alpha"])


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("api-auth") / "home", {"RAG_API_KEYS": RAG_API_KEYS})
    base = running.base_url
    for kb in ("alpha", "beta"):
        assert requests.post(f"{base}/api/kbs", json={"name": kb}, headers=auth("admin"), timeout=30).status_code == 201
    yield running
    running.stop()


def error_code(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["code"]  # type: ignore[no-any-return]


def test_missing_or_wrong_key_is_401(server: RunningServer) -> None:
    base = server.base_url
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200  # liveness needs no key
    missing = requests.get(f"{base}/api/kbs", timeout=10)
    assert error_code(missing, 401) == "unauthorized" and missing.headers["WWW-Authenticate"] == "Bearer"
    assert error_code(requests.get(f"{base}/api/kbs", headers={"Authorization": "Bearer wrong"}, timeout=10),
                      401) == "unauthorized"
    assert error_code(requests.get(f"{base}/api/kbs", headers={"Authorization": KEYS["admin"]}, timeout=10),
                      401) == "unauthorized"  # not the Bearer scheme
    for path in ("/metrics", "/readyz", "/v1/models", "/api/kbs/alpha/documents"):
        assert requests.get(f"{base}{path}", timeout=10).status_code == 401, path
    assert requests.post(f"{base}/api/kbs/alpha/search", json={"query": "x"}, timeout=10).status_code == 401


def test_roles(server: RunningServer) -> None:
    base = server.base_url
    # reader: list, get, search; nothing that writes
    assert requests.get(f"{base}/api/kbs", headers=auth("reader"), timeout=10).status_code == 200
    assert requests.post(f"{base}/api/kbs/alpha/search", json={"query": "x"}, headers=auth("reader"),
                         timeout=60).status_code == 200
    files = [("files", ("r.txt", io.BytesIO(b"Readers may not upload.")))]
    assert error_code(requests.post(f"{base}/api/kbs/alpha/documents", files=files, headers=auth("reader"),
                                    timeout=30), 403) == "forbidden"
    assert error_code(requests.post(f"{base}/api/kbs", json={"name": "r"}, headers=auth("reader"), timeout=10),
                      403) == "forbidden"

    # writer: + upload, delete documents, sync; not create or delete KBs
    files = [("files", ("w.txt", io.BytesIO(b"Writers upload the weekly rota on Fridays.")))]
    uploaded = requests.post(f"{base}/api/kbs/alpha/documents", files=files, headers=auth("writer"), timeout=30)
    assert uploaded.status_code == 202, uploaded.text
    job = wait_for_job(base, uploaded.json()["job_id"], headers=auth("reader"))
    assert job["status"] == "succeeded"
    doc_id = requests.get(f"{base}/api/kbs/alpha/documents", headers=auth("reader"), timeout=10).json()[
        "documents"][0]["doc_id"]
    assert error_code(requests.delete(f"{base}/api/kbs/alpha/documents/{doc_id}", headers=auth("reader"),
                                      timeout=10), 403) == "forbidden"
    assert requests.delete(f"{base}/api/kbs/alpha/documents/{doc_id}", headers=auth("writer"),
                           timeout=60).status_code == 200
    assert error_code(requests.post(f"{base}/api/kbs", json={"name": "w"}, headers=auth("writer"), timeout=10),
                      403) == "forbidden"
    assert error_code(requests.delete(f"{base}/api/kbs/beta", headers=auth("writer"), timeout=10), 403) == "forbidden"

    # admin: + create and delete KBs
    assert requests.post(f"{base}/api/kbs", json={"name": "gamma"}, headers=auth("admin"), timeout=10).status_code == 201
    assert requests.delete(f"{base}/api/kbs/gamma", headers=auth("admin"), timeout=30).status_code == 200


def test_kb_restricted_key(server: RunningServer) -> None:
    base = server.base_url
    listed = requests.get(f"{base}/api/kbs", headers=auth("alpha_reader"), timeout=10).json()["kbs"]
    assert [kb["name"] for kb in listed] == ["alpha"]
    assert requests.get(f"{base}/api/kbs/alpha", headers=auth("alpha_reader"), timeout=10).status_code == 200
    assert error_code(requests.get(f"{base}/api/kbs/beta", headers=auth("alpha_reader"), timeout=10), 403) == "forbidden"
    assert error_code(requests.post(f"{base}/api/kbs/beta/search", json={"query": "x"}, headers=auth("alpha_reader"),
                                    timeout=10), 403) == "forbidden"
    assert error_code(requests.post(f"{base}/v1/chat/completions", headers=auth("alpha_reader"), timeout=10,
                                    json={"model": "kb:beta", "messages": [{"role": "user", "content": "hi"}]}),
                      403) == "forbidden"


def test_openai_client_with_keys(server: RunningServer) -> None:
    import openai

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="not-a-key").models.list()
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEYS["alpha_reader"])
    kb_models = [model.id for model in client.models.list() if model.id.startswith("kb:")]
    assert kb_models == ["kb:alpha"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="kb:beta", messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def test_keys_never_reach_the_log(server: RunningServer) -> None:
    requests.get(f"{server.base_url}/api/kbs", headers={"Authorization": "Bearer guessed-key-123"}, timeout=10)
    log = server.log()
    assert "GET /api/kbs" in log  # the access log is there...
    for secret in [*KEYS.values(), "guessed-key-123"]:
        assert secret not in log  # ...without any key in it


def test_ui_login_takes_an_admin_api_key(server: RunningServer) -> None:
    base = server.base_url
    assert requests.get(f"{base}/ui/config", timeout=30).status_code == 401
    assert requests.post(f"{base}/ui/login", data={"username": "me", "password": "wrong"}, timeout=30).status_code == 400
    # The UI offers every action to whoever is in, so narrower keys do not open it.
    for role in ("reader", "writer", "alpha_reader"):
        refused = requests.post(f"{base}/ui/login", data={"username": "me", "password": KEYS[role]}, timeout=30)
        assert refused.status_code == 400, role
    session = requests.Session()
    login = session.post(f"{base}/ui/login", data={"username": "me", "password": KEYS["admin"]}, timeout=30)
    assert login.status_code == 200
    assert session.get(f"{base}/ui/config", timeout=30).status_code == 200

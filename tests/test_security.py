"""Issue 12 against the real server: server folders, keys, audit, hosts, rate limits, bounded requests.

Each test is one item of the issue's "Why" list and fails on the code before the fix (noted per test).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from api_server import RunningServer, free_port, start_server, wait_for_job

KEYS = {
    "admin": "adm-5e1f0c9d7b3a2e4f",
    "writer": "wrt-a1b2c3d4e5f60718",
    "reader": "rdr-99887766554433",
    "burst": "bst-1029384756abcdef",
}
# KEY:role[:KBS[:LABEL]]: the labels name the keys in the audit log.
API_KEYS = ";".join([f"{KEYS['admin']}:admin::ops-team", f"{KEYS['writer']}:writer:alpha:alpha-writer",
                     f"{KEYS['reader']}:reader", f"{KEYS['burst']}:reader::burst"])
RATE_LIMIT = 300  # per minute, per key and per address without a key


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


def error(response: requests.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()["error"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A sync root that holds, as deployments often do, RAG_HOME and the config file with the admin key."""
    base = tmp_path_factory.mktemp("security")
    root = base / "shares"
    docs = root / "docs"
    docs.mkdir(parents=True)
    (docs / "guide.md").write_text("# Guide\n\nThe night shift hands over at six.", encoding="utf-8")
    secret = base / "elsewhere"
    secret.mkdir()
    (secret / "private.md").write_text("Outside every sync root.", encoding="utf-8")
    (docs / "passwd.md").symlink_to("/etc/passwd")
    (docs / "outside").symlink_to(secret, target_is_directory=True)
    config = root / "rag.yaml"
    config.write_text(yaml.safe_dump({"api_keys": API_KEYS,
                                      "server": {"sync_roots": [str(root)], "rate_limit": f"{RATE_LIMIT}/minute"}}),
                      encoding="utf-8")
    return {"base": base, "root": root, "docs": docs, "secret": secret, "config": config, "home": root / "rag-home"}


@pytest.fixture(scope="module")
def keyed(layout: dict[str, Path]) -> Iterator[RunningServer]:
    # The keys are in the config file; the log goes outside the sync root.
    running = start_server(layout["home"], config=layout["config"], log_dir=layout["base"])
    try:
        for kb in ("alpha", "beta"):
            created = requests.post(f"{running.base_url}/api/kbs", json={"name": kb}, headers=auth("admin"), timeout=30)
            assert created.status_code == 201, created.text
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("bounded") / "home", {
        "RAG_SERVER__MAX_QUESTION_TOKENS": "50",
        "RAG_SERVER__MAX_MESSAGE_TOKENS": "100",
        "RAG_SERVER__MAX_EMBEDDING_INPUTS": "4",
        "RAG_SERVER__MAX_EMBEDDING_TOKENS": "50",
        "RAG_SERVER__MAX_REQUEST_MB": "0.05",
    })
    try:
        assert requests.post(f"{running.base_url}/api/kbs", json={"name": "k"}, timeout=30).status_code == 201
        yield running
    finally:
        running.stop()


# -- server folders ----------------------------------------------------------------------------


def test_only_admin_keys_sync_and_refusals_do_not_tell_what_exists(keyed: RunningServer,
                                                                    layout: dict[str, Path]) -> None:
    """Before: a writer synced any path; 202 for a folder that exists, 422 for one that does not."""
    url = f"{keyed.base_url}/api/kbs/alpha/sync"
    assert error(requests.post(url, json={"source": str(layout["docs"])}, headers=auth("writer"), timeout=30),
                 403)["code"] == "forbidden"
    refusals = set()
    for source in ["/etc", "/no/such/folder", str(layout["secret"]), str(layout["home"] / "uploads"),
                   str(layout["home"]), str(layout["root"] / "missing"), str(layout["docs"] / "guide.md"),
                   str(layout["docs"] / "outside")]:  # the last: a symlink out of the root
        refused = requests.post(url, json={"source": source}, headers=auth("admin"), timeout=30)
        refusals.add((refused.status_code, error(refused, 403)["message"]))
    assert len(refusals) == 1  # one answer, whether or not the path exists


@pytest.mark.parametrize("source", ["docs", "./docs", "~root/x", "~no-such-user-42/x", "/srv/a\x00b",
                                    "/" + "a" * 5000])
def test_malformed_sync_paths_are_4xx(keyed: RunningServer, source: str) -> None:
    """Before: relative paths and ~user were accepted; NUL, over-long paths and unknown ~user gave 500."""
    response = requests.post(f"{keyed.base_url}/api/kbs/alpha/sync", json={"source": source},
                             headers=auth("admin"), timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] in {"invalid_input", "validation_error"}


def test_sync_skips_symlinks_out_of_the_root_rag_home_and_the_config(keyed: RunningServer,
                                                                     layout: dict[str, Path]) -> None:
    """Before: /etc/passwd through a symlink, RAG_HOME's uploads and the config file (with the keys) were indexed."""
    upload = requests.post(f"{keyed.base_url}/api/kbs/beta/documents?wait=true", headers=auth("admin"), timeout=120,
                           files=[("files", ("beta-only.md", io.BytesIO(b"Beta's own upload.")))])
    assert upload.status_code == 201, upload.text
    accepted = requests.post(f"{keyed.base_url}/api/kbs/alpha/sync", json={"source": str(layout["root"])},
                             headers=auth("admin"), timeout=30)
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(keyed.base_url, accepted.json()["job_id"], headers=auth("reader"))
    assert job["status"] == "succeeded", job
    documents = requests.get(f"{keyed.base_url}/api/kbs/alpha/documents", headers=auth("reader"), timeout=30)
    assert [doc["source"] for doc in documents.json()["documents"]] == ["docs/guide.md"]
    failed = {item["path"]: item["error"] for item in job["result"]["failed"]}  # type: ignore[index]
    assert "outside the sync root" in failed["docs/passwd.md"]
    # A symlinked folder is not descended into at all (discovery does not follow folder symlinks).
    assert not any(path.startswith("docs/outside") for path in failed)
    assert "never indexed" in failed["rag.yaml"]
    assert any(path.startswith("rag-home/uploads/beta/") and "never indexed" in reason
               for path, reason in failed.items())
    hits = requests.post(f"{keyed.base_url}/api/kbs/alpha/search", json={"query": "root adm ops-team beta upload"},
                         headers=auth("reader"), timeout=60).json()["hits"]
    assert all(hit["source"] == "docs/guide.md" for hit in hits)


# -- leaks: the audit log ------------------------------------------------------------------------


def test_audit_log_names_the_key_the_kb_and_the_outcome(keyed: RunningServer) -> None:
    """Before: nothing recorded which key deleted or synced what."""
    base = keyed.base_url
    assert requests.post(f"{base}/api/kbs", json={"name": "scratch"}, headers=auth("admin"), timeout=30).status_code == 201
    assert requests.delete(f"{base}/api/kbs/scratch", headers=auth("writer"), timeout=30).status_code == 403
    assert requests.delete(f"{base}/api/kbs/scratch", headers=auth("admin"), timeout=30).status_code == 200
    lines = [line.split("rag.audit: ", 1)[1] for line in keyed.log().splitlines() if "rag.audit: " in line]
    assert any(line.startswith("action=kb.create key=ops-team kb=scratch outcome=ok status=201") for line in lines)
    assert any(line.startswith("action=kb.delete key=alpha-writer kb=scratch outcome=denied status=403")
               for line in lines)
    assert any(line.startswith("action=kb.delete key=ops-team kb=scratch outcome=ok status=200") for line in lines)
    assert any(line.startswith("action=sync key=alpha-writer kb=alpha outcome=denied") for line in lines)
    assert any(line.startswith("action=sync key=ops-team kb=alpha outcome=ok status=202") for line in lines)
    assert any(line.startswith("action=sync.job key=ops-team kb=alpha outcome=succeeded") for line in lines)
    assert any(line.startswith("action=documents.upload key=ops-team kb=beta outcome=ok status=201")
               for line in lines)
    for secret in KEYS.values():
        assert secret not in keyed.log()


# -- secure defaults -----------------------------------------------------------------------------


def test_host_header_is_checked_in_the_keyless_mode(keyless: RunningServer, keyed: RunningServer) -> None:
    """Before: any Host header was accepted, so a page could reach a keyless server through DNS rebinding."""
    port = keyless.base_url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io"):
        rebound = requests.get(f"{keyless.base_url}/api/kbs", headers={"Host": host}, timeout=30)
        assert error(rebound, 400)["code"] == "invalid_host"
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert requests.get(f"{keyless.base_url}/api/kbs", headers={"Host": host}, timeout=30).status_code == 200
    # With keys the key is the check: a reverse proxy's host name reaches it.
    proxied = requests.get(f"{keyed.base_url}/api/kbs", headers={"Host": "rag.example.org", **auth("reader")},
                           timeout=30)
    assert proxied.status_code == 200


def run_serve(env: dict[str, str], host: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    for name in ("RAG_API_KEYS", "RAG_CONFIG", "RAG_SERVER__ALLOW_ANONYMOUS"):
        if name not in env:
            environment.pop(name, None)
    rag = Path(sys.executable).with_name("rag")
    return subprocess.run([str(rag), "serve", "--host", host, "--port", str(free_port())], env=environment,
                          capture_output=True, text=True, timeout=120)


def test_serving_off_loopback_without_keys_refuses_to_start(tmp_path: Path) -> None:
    """Before: 0.0.0.0 without keys started with a warning, every caller admin."""
    refused = run_serve({"RAG_HOME": str(tmp_path / "home")}, "0.0.0.0")
    assert refused.returncode == 1
    assert "refusing to serve on 0.0.0.0 without API keys" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("spec", [";", "", " ; ; ", "only-a-secret-no-role", "s3cr3t-value:superuser"])
def test_empty_or_malformed_key_lists_stop_the_server(tmp_path: Path, spec: str) -> None:
    """Before: ";" turned auth off without even the warning."""
    result = run_serve({"RAG_HOME": str(tmp_path / "home"), "RAG_API_KEYS": spec}, "127.0.0.1")
    assert result.returncode == 1, result.stderr
    assert "api_keys" in result.stderr and "Traceback" not in result.stderr
    for word in ("only-a-secret-no-role", "s3cr3t-value", "superuser"):
        assert word not in result.stderr  # the message names the entry's position, never its text


def test_config_errors_never_echo_secret_values(tmp_path: Path) -> None:
    """Before: a malformed api_keys value in the config file was printed in the error."""
    config = tmp_path / "rag.yaml"
    config.write_text(yaml.safe_dump({"api_keys": {"k3y-sekrit-0192": "admin"},
                                      "llm": {"api_key": ["sk-live-abcdef"]}}), encoding="utf-8")
    rag = Path(sys.executable).with_name("rag")
    environment = {**os.environ, "RAG_HOME": str(tmp_path / "home"), "RAG_CONFIG": str(config)}
    environment.pop("RAG_API_KEYS", None)
    result = subprocess.run([str(rag), "kb", "list"], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "api_keys" in result.stderr and "llm.api_key" in result.stderr
    assert "k3y-sekrit-0192" not in result.stderr and "sk-live-abcdef" not in result.stderr
    config.write_text('api_keys: "k3y-sekrit-0192:admin\nserver: [\n', encoding="utf-8")  # not YAML at all
    broken = subprocess.run([str(rag), "kb", "list"], env=environment, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1 and "not valid YAML at line" in broken.stderr
    assert "k3y-sekrit-0192" not in broken.stderr


# -- bounded requests ----------------------------------------------------------------------------


def test_question_and_message_lengths_are_limited_in_tokens(keyless: RunningServer) -> None:
    """Before: a question of any length went into search, the tokenizer and the LLM."""
    base = keyless.base_url
    long_question = "why " * 60  # about 78 tokens; the limit is 50
    chat = requests.post(f"{base}/api/kbs/k/chat", json={"messages": [{"role": "user", "content": long_question}]},
                         timeout=30)
    assert "the limit is 50 tokens" in error(chat, 422)["message"]
    no_spaces = requests.post(f"{base}/api/kbs/k/chat", json={"messages": [{"role": "user", "content": "x" * 400}]},
                              timeout=30)
    assert "the limit is 50 tokens" in error(no_spaces, 422)["message"]
    history = [{"role": "user", "content": "word " * 90}, {"role": "assistant", "content": "ok"},
               {"role": "user", "content": "and then?"}]
    assert "message 1" in error(requests.post(f"{base}/api/kbs/k/chat", json={"messages": history}, timeout=30),
                                422)["message"]
    completion = requests.post(f"{base}/v1/chat/completions", timeout=30,
                               json={"model": "kb:k", "messages": [{"role": "user", "content": long_question}]})
    assert "the limit is 50 tokens" in error(completion, 422)["message"]
    search = requests.post(f"{base}/api/kbs/k/search", json={"query": long_question}, timeout=30)
    assert "the limit is 50 tokens" in error(search, 422)["message"]


def test_embeddings_inputs_are_capped(keyless: RunningServer) -> None:
    """Before: /v1/embeddings took 2,048 inputs of any length."""
    url = f"{keyless.base_url}/v1/embeddings"
    assert "1 to 4 texts" in error(requests.post(url, json={"input": ["a"] * 5}, timeout=30), 422)["message"]
    too_long = requests.post(url, json={"input": ["short", "word " * 60]}, timeout=30)
    assert "input[1]" in error(too_long, 422)["message"]


def test_chunked_body_over_the_limit_is_413(keyless: RunningServer) -> None:
    """Before: a chunked body over the limit answered 400."""

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(10):
            yield b"a" * 10_000
        yield b'"}'

    search = requests.post(f"{keyless.base_url}/api/kbs/k/search", data=chunks(), timeout=30,
                           headers={"Content-Type": "application/json"})
    assert error(search, 413)["code"] == "payload_too_large"
    body = b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.txt\"\r\n\r\n" + b"x" * 100_000
    upload = requests.post(f"{keyless.base_url}/api/kbs/k/documents", data=iter([body[:50_000], body[50_000:]]),
                           headers={"Content-Type": "multipart/form-data; boundary=b"}, timeout=30)
    assert error(upload, 413)["code"] == "payload_too_large"


def uploads(server: RunningServer, kb: str) -> list[str]:
    folder = server.home / "uploads" / kb
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_bad_upload_names_are_4xx_and_leave_no_files(keyless: RunningServer) -> None:
    """Before: a 200-CJK-character name, `a.md` then `a.md/b.md` gave 500; a failing batch left orphan files."""
    url = f"{keyless.base_url}/api/kbs/k/documents"

    def send(*names: str) -> requests.Response:
        return requests.post(url, files=[("files", (name, io.BytesIO(b"Some text."))) for name in names], timeout=30)

    assert "255 bytes" in error(send("文" * 200 + ".md"), 422)["message"]
    assert send("a.md").status_code == 202
    assert error(send("a.md/b.md"), 422)["code"] == "invalid_input"
    assert send("dir/x.md").status_code == 202
    assert error(send("dir"), 422)["code"] == "invalid_input"
    before = uploads(keyless, "k")
    assert error(send("fresh.md", "fresh.md/inner.md"), 422)["code"] == "invalid_input"
    assert error(send("fresh2.md", "文" * 200), 422)["code"] == "invalid_input"
    assert uploads(keyless, "k") == before == ["a.md", "dir", "dir/x.md"]


@pytest.mark.parametrize("weight", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_fusion_weights_are_422(keyless: RunningServer, weight: str) -> None:
    """Before: `Infinity` as a fusion weight gave `"score": null`."""
    body = '{"query": "night shift", "bm25_weight": WEIGHT}'.replace("WEIGHT", weight)
    response = requests.post(f"{keyless.base_url}/api/kbs/k/search", data=body, timeout=30,
                             headers={"Content-Type": "application/json"})
    assert error(response, 422)["code"] == "validation_error"


# -- leaks and injection: the UI -----------------------------------------------------------------


def test_ui_sends_a_content_security_policy(keyless: RunningServer) -> None:
    """Before: no Content-Security-Policy on /ui, so the browser fetched remote images in answers."""
    page = requests.get(f"{keyless.base_url}/ui/", timeout=60)
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["img-src"].split() == ["'self'", "data:", "blob:"]
    assert directives["default-src"] == "'self'" and directives["connect-src"] == "'self'"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


# -- rate limits (last: they spend the module's budgets) ----------------------------------------


def test_ui_login_is_rate_limited_per_address(keyed: RunningServer) -> None:
    """Before: /ui/login took any number of guesses."""
    url = f"{keyed.base_url}/ui/login"
    for attempt in range(10):
        wrong = requests.post(url, data={"username": "x", "password": f"guess-{attempt}"}, timeout=30)
        assert wrong.status_code == 400, attempt
    blocked = requests.post(url, data={"username": "x", "password": KEYS["admin"]}, timeout=30)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    assert "failed logins" in blocked.json()["error"]["message"]


def test_requests_are_rate_limited_per_key_and_per_address(keyed: RunningServer) -> None:
    """Before: nothing was rate-limited."""
    url = f"{keyed.base_url}/api/kbs"
    statuses = [requests.get(url, headers=auth("burst"), timeout=30).status_code for _ in range(RATE_LIMIT + 1)]
    assert statuses.count(429) >= 1 and set(statuses) == {200, 429}
    limited = requests.get(url, headers=auth("burst"), timeout=30)
    assert error(limited, 429)["code"] == "too_many_requests" and int(limited.headers["Retry-After"]) >= 1
    assert requests.get(url, headers=auth("reader"), timeout=30).status_code == 200  # another key, its own budget
    anonymous = [requests.get(url, timeout=30).status_code for _ in range(RATE_LIMIT + 1)]
    assert anonymous[-1] == 429 and set(anonymous) == {401, 429}  # per address without a valid key
    assert requests.get(url, headers=auth("reader"), timeout=30).status_code == 200

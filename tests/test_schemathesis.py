"""Schemathesis against the live OpenAPI schema of the real server, with and without API keys.

Every operation of /openapi.json is called with generated data (examples, coverage, fuzzing and
stateful phases, a fixed seed, bounded in examples and time). The run fails on any 5xx and on any
response whose status, content type or body the schema does not declare.
The server runs with rate limits off (they are tested in test_security.py) and is used once its models
are loaded: /readyz answers 503 until then, as documented.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_server import RunningServer, start_server, wait_for_job

ADMIN_KEY = "st-admin-4c1d9e7f2a"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 5
MAX_SECONDS = 30  # per run; the whole run is bounded by this, however many cases it generates


@pytest.fixture(scope="module", params=["keyless", "keys"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {"RAG_SERVER__RATE_LIMIT": "off"}
    if request.param == "keys":
        env["RAG_API_KEYS"] = f"{ADMIN_KEY}:admin::schemathesis"
    running = start_server(tmp_path_factory.mktemp(f"st-{request.param}") / "home", env)
    try:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"} if request.param == "keys" else {}
        running.wait_ready(headers=headers)
        base = running.base_url
        assert requests.post(f"{base}/api/kbs", json={"name": "notes"}, headers=headers, timeout=30).status_code == 201
        uploaded = requests.post(f"{base}/api/kbs/notes/documents", headers=headers, timeout=30, files=[
            ("files", ("shift.md", io.BytesIO(b"# Shifts\n\nThe night shift starts at ten.")))])
        assert wait_for_job(base, uploaded.json()["job_id"], headers=headers)["status"] == "succeeded"
        running.keyed = request.param == "keys"  # type: ignore[attr-defined]
        yield running
    finally:
        running.stop()


def run_schemathesis(server: RunningServer, workdir: Path, headers: dict[str, str]) -> tuple[int, str]:
    command = [str(Path(sys.executable).with_name("schemathesis")), "--no-color", "run", f"{server.base_url}/openapi.json",
               "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_SECONDS),
               "--seed", "12", "--workers", "1", "--request-timeout", "60"]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=MAX_SECONDS * 4 + 120)
    return done.returncode, done.stdout + done.stderr


def summary(output: str) -> tuple[int, int]:
    tested = re.search(r"Tested:\s+(\d+)", output)
    generated = re.search(r"(\d+) generated", output)
    assert tested and generated, output[-3000:]
    return int(tested.group(1)), int(generated.group(1))


@pytest.mark.slow
def test_no_server_errors_or_schema_mismatches(server: RunningServer, tmp_path: Path) -> None:
    """Before: a 500 in the sync route within minutes (NUL bytes, over-long and ~user paths)."""
    keyed = bool(getattr(server, "keyed", False))
    runs = [{"Authorization": f"Bearer {ADMIN_KEY}"}, {}] if keyed else [{}]  # with keys: as admin, and keyless
    operations = len(requests.get(f"{server.base_url}/openapi.json", timeout=30).json()["paths"])
    for headers in runs:
        code, output = run_schemathesis(server, tmp_path, headers)
        tested, generated = summary(output)
        print(f"schemathesis ({'keys' if keyed else 'keyless'}, {'admin key' if headers else 'no key'}): "
              f"{tested} operations tested over {operations} paths, {generated} test cases, exit {code}")
        assert code == 0, output[-6000:]
        assert tested >= 15 and generated >= 100
    assert "Traceback" not in server.log()

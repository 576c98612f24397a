"""Runs the real `rag serve` in a subprocess on a free localhost port, for the API tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    home: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def wait_ready(self, timeout: float = 300, headers: dict[str, str] | None = None) -> dict[str, object]:
        """Wait for /readyz (models loaded); returns its body."""
        deadline = time.monotonic() + timeout
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                response = requests.get(f"{self.base_url}/readyz", headers=headers, timeout=10)
            except requests.Timeout:  # model loading can hold the interpreter for a while on a busy machine
                continue
            body = response.json()
            if response.status_code == 200:
                return body
            if body.get("detail"):
                raise RuntimeError(f"warm-up failed: {body['detail']}")
            time.sleep(0.5)
        raise TimeoutError(f"server not ready after {timeout}s: {body}")


def start_server(home: Path, env: dict[str, str] | None = None, timeout: float = 300,
                 config: Path | None = None, log_dir: Path | None = None) -> RunningServer:
    """``config``: a YAML settings file (RAG_CONFIG); otherwise the caller's RAG_CONFIG is not passed on.
    ``log_dir``: where the server's log goes (default: beside ``home``)."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = (log_dir or home.parent) / f"server-{port}.log"
    environment = {**os.environ, "RAG_HOME": str(home), "HF_HUB_OFFLINE": "1", **(env or {})}
    environment.pop("RAG_CONFIG", None)
    if config is not None:
        environment["RAG_CONFIG"] = str(config)
    rag = Path(sys.executable).with_name("rag")
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(rag), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=environment)
    server = RunningServer(process, f"http://127.0.0.1:{port}", home, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            if requests.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    server.stop(kill=True)
    raise TimeoutError(f"server did not start within {timeout}s:\n{server.log()[-3000:]}")


def wait_for_job(base_url: str, job_id: str, headers: dict[str, str] | None = None,
                 timeout: float = 300) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{base_url}/api/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["status"] in {"succeeded", "failed", "skipped", "cancelled"}:
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not finish within {timeout}s")

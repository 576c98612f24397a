"""One real `rag serve` (with API keys) shared by the ecosystem tests: client, LangChain, Dify, MCP.

Started on first use and stopped when the test process exits, so the four test modules pay for one
server start and one small ingest between them.
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.api_server import RunningServer, start_server, wait_for_job
from tests.conftest import SAMPLE_DOCS

ADMIN = "eco-admin-key"
WRITER = "eco-writer-key"
READER_HANDBOOK = "eco-reader-handbook"  # a reader limited to the "handbook" KB
KEYS = f"{ADMIN}:admin;{WRITER}:writer;{READER_HANDBOOK}:reader:handbook"
KB = "handbook"
OTHER_KB = "other"


@dataclass
class EcosystemServer:
    server: RunningServer
    kb: str = KB
    other_kb: str = OTHER_KB

    @property
    def base_url(self) -> str:
        return self.server.base_url


_shared: EcosystemServer | None = None


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ecosystem_server() -> EcosystemServer:
    """The shared server: KB "handbook" holds SAMPLE_DOCS, KB "other" one unrelated document."""
    global _shared
    if _shared is not None and _shared.server.process.poll() is None:
        return _shared
    root = Path(tempfile.mkdtemp(prefix="rag-ecosystem-"))
    running = start_server(root / "home", env={"RAG_API_KEYS": KEYS})
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # runs after the stop below (LIFO)
    atexit.register(running.stop)
    base, headers = running.base_url, _bearer(ADMIN)
    for name, files in ((KB, SAMPLE_DOCS), (OTHER_KB, {"other/notes.txt": "The other KB: parking rules. "
                                                        "Cars park on level two of the garage."})):
        assert requests.post(f"{base}/api/kbs", json={"name": name}, headers=headers, timeout=30).status_code == 201
        upload = [("files", (path, io.BytesIO(text.encode()))) for path, text in files.items()]
        response = requests.post(f"{base}/api/kbs/{name}/documents", files=upload, headers=headers, timeout=60)
        assert wait_for_job(base, response.json()["job_id"], headers=headers)["status"] == "succeeded"
    _shared = EcosystemServer(running)
    return _shared

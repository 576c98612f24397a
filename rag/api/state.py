"""What the routers share: the service, the job runner, the key ring, metrics and readiness."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from fastapi import Request

from rag.api.auth import KeyRing
from rag.api.metrics import Metrics
from rag.api.uploads import UploadStore
from rag.config import Settings
from rag.jobs import JobRunner
from rag.service import RagService

log = logging.getLogger("rag.api")


@dataclass
class Readiness:
    """Loads the models in a background thread at start-up, so /readyz can say when they are in memory."""

    embeddings: bool = False
    llm: bool = False
    error: str | None = None
    seconds: float | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, service: RagService) -> None:
        self._thread = threading.Thread(target=self._warm_up, args=(service,), name="rag-warm-up", daemon=True)
        self._thread.start()

    def _warm_up(self, service: RagService) -> None:
        started = time.perf_counter()
        try:
            service.warm_up()
            self.embeddings = True
            _ = service.chat_model
            self.llm = True
        except Exception as exc:  # reported by /readyz; the server keeps serving what works
            log.exception("model warm-up failed")
            self.error = f"{type(exc).__name__}: {exc}"
        self.seconds = time.perf_counter() - started

    @property
    def ready(self) -> bool:
        return self.embeddings and self.llm


@dataclass
class ApiState:
    settings: Settings
    service: RagService
    jobs: JobRunner
    keys: KeyRing
    metrics: Metrics
    readiness: Readiness
    uploads: UploadStore


def api_state(request: Request) -> ApiState:
    return request.app.state.api  # type: ignore[no-any-return]

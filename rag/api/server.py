"""`rag serve`: the app under uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from rag.api.app import create_app
from rag.config import Settings

log = logging.getLogger("rag.api")


def serve(settings: Settings, host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.api_keys and host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("serving on %s without API keys: anyone who can reach this port has admin rights "
                    "(set RAG_API_KEYS)", host)
    app = create_app(settings)
    # One worker: the models and the catalog handles live in this process.
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, timeout_graceful_shutdown=5)

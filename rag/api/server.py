"""`rag serve`: the app under uvicorn."""

from __future__ import annotations

import ipaddress
import logging

import uvicorn

from rag.api.app import create_app
from rag.config import Settings
from rag.errors import ConfigError

log = logging.getLogger("rag.api")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only listens on this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to any interface


def check_bind(settings: Settings, host: str) -> None:
    """Off loopback, keys are required: without them every caller would be admin."""
    if settings.api_keys is not None or is_loopback(host):
        return
    if not settings.server.allow_anonymous:
        raise ConfigError(f"refusing to serve on {host} without API keys: anyone who could reach the port would "
                          "be admin. Set RAG_API_KEYS (KEY:role entries), bind 127.0.0.1, or set "
                          "server.allow_anonymous: true to allow it on purpose")
    log.warning("serving on %s without API keys (server.allow_anonymous): anyone who can reach this port has "
                "admin rights", host)


def serve(settings: Settings, host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_bind(settings, host)
    app = create_app(settings)
    # One worker: the models and the catalog handles live in this process.
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, timeout_graceful_shutdown=5)

"""The app factory: the only place that knows both the API and the web UI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from rag.api import chat, conversations, dify, documents, health, jobs, kbs, openai_compat, search
from rag.api.auth import KeyRing, Principal, Role
from rag.api.background import register_resumers
from rag.api.errors import install_error_handlers
from rag.api.guard import GuardMiddleware
from rag.api.metrics import Metrics
from rag.api.middleware import RequestContextMiddleware
from rag.api.schemas import ErrorResponse
from rag.api.state import ApiState, Readiness
from rag.api.uploads import UploadStore
from rag.config import Settings
from rag.jobs import JobRunner
from rag.scheduler import SyncScheduler
from rag.service import RagService

log = logging.getLogger("rag.api")

_UI_MISSING = """<!doctype html><html><head><meta charset="utf-8"><title>RAG assistant</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The web UI is not installed</h1><p>{reason}</p>
<p>The REST API is available: see <a href="/docs">/docs</a>.</p></body></html>"""


def create_app(settings: Settings, service: RagService | None = None) -> FastAPI:
    service = service or RagService(settings)
    keys = KeyRing.parse(settings.api_keys.get_secret_value() if settings.api_keys is not None else None)
    state = ApiState(settings=settings, service=service, jobs=JobRunner(service.catalog), keys=keys,
                     metrics=Metrics(), readiness=Readiness(), uploads=UploadStore(settings.home / "uploads"))
    # Built here so that a bad `sources` entry stops start-up with its message.
    scheduler = (SyncScheduler(service, state.jobs)
                 if settings.server.run_schedules and settings.sources else None)
    from rag.mcp_server import McpEndpoint  # here: rag.mcp_server imports rag.api (a cycle at import time)

    mcp = McpEndpoint(service, keys)  # /mcp: the KBs as MCP tools (docs/integrations.md)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        register_resumers(state)  # interrupted uploads and syncs are run again, not failed
        interrupted = state.jobs.recover_interrupted()
        if interrupted:
            log.warning("marked %d job(s) interrupted by the last shutdown as failed", interrupted)
        state.readiness.start(service)
        if scheduler is not None:
            scheduler.start()
        async with mcp.running():
            yield
        if scheduler is not None:
            scheduler.shutdown()
        state.jobs.shutdown(wait=False)

    app = FastAPI(
        title="RAG knowledge assistant",
        version="1",
        description="Knowledge bases, documents, search, grounded chat, and an OpenAI-compatible /v1. "
        "Errors are `{\"error\": {\"code\", \"message\"}}`.",
        lifespan=lifespan,
        responses={"4XX": {"model": ErrorResponse}, "5XX": {"model": ErrorResponse}},
    )
    app.state.api = state
    install_error_handlers(app)
    max_body = int(settings.server.max_request_mb * 1024 * 1024)
    server = settings.server
    # Added first, so it runs inside the request context: its 400s and 429s carry a request id.
    app.add_middleware(GuardMiddleware, keys=keys, allowed_hosts=server.allowed_hosts, rate_limit=server.rate_limit,
                       login_rate_limit=server.login_rate_limit, ui_path="/ui")
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics, max_body_bytes=max_body)
    for module in (health, kbs, documents, search, chat, conversations, jobs, openai_compat, dify):
        app.include_router(module.router)
    app.add_route("/mcp", mcp, methods=["GET", "POST", "DELETE"], include_in_schema=False)
    _mount_ui(app, service, state.jobs, keys)
    return app


def _mount_ui(app: FastAPI, service: RagService, jobs: JobRunner, keys: KeyRing) -> None:
    try:
        from webui.app import mount_ui
    except ModuleNotFoundError as exc:
        if exc.name not in {"webui", "webui.app"}:
            raise
        _placeholder_ui(app, "This installation has no web UI module (webui.app).")
        return
    except Exception as exc:  # a broken UI must not take the API down with it
        log.exception("the web UI failed to import; serving a placeholder at /ui")
        _placeholder_ui(app, f"The web UI failed to load: {type(exc).__name__}.")
        return
    # With API keys on, the UI asks for one at a login page (any user name, the key as password). The UI
    # calls the service directly and offers every action (KBs, deletes, syncs of server folders), so
    # only an admin key for all KBs opens it; reader and writer keys stay on the REST API's checks.
    auth = (lambda _user, password: _opens_ui(keys.principal_for(password))) if keys.enabled else None
    mount_ui(app, service, jobs, path="/ui", auth=auth)


def _opens_ui(principal: Principal | None) -> bool:
    return principal is not None and principal.role is Role.admin and principal.kbs is None


def _placeholder_ui(app: FastAPI, reason: str) -> None:
    page = _UI_MISSING.format(reason=reason)

    @app.get("/ui", include_in_schema=False, response_class=HTMLResponse)
    def ui_placeholder() -> HTMLResponse:
        return HTMLResponse(page)

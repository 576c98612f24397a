"""The knowledge bases as a Model Context Protocol server (the official ``mcp`` SDK).

Tools: ``list_knowledge_bases``, ``search`` (kb, query, top_k: hits with source, page, score, text) and
``read_document_chunk`` (kb, doc_id, chunk_id: the chunk with its neighbours' ids, to read on).
Served two ways with the same tools:

- on ``/mcp`` in the API app (streamable HTTP, stateless JSON responses), the API key as bearer token:
  a missing or unknown key is a 401 before any MCP message is read, and each tool applies the key's
  role (reader or above) and KB limits, as the REST API does;
- ``rag mcp`` over stdio, for desktop assistants that start the server themselves (the local user's
  own files: every KB, as the CLI has).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from rag.api.auth import ANONYMOUS_ADMIN, KeyRing, Principal, Role
from rag.errors import RagError, Unauthorized
from rag.service import RagService

log = logging.getLogger("rag.mcp")

INSTRUCTIONS = (
    "Search the user's knowledge bases. Call list_knowledge_bases first, then search with a kb name and a "
    "question; cite each hit's source (and page). read_document_chunk returns a hit's whole chunk and the "
    "ids of the chunks around it."
)


class KnowledgeBase(BaseModel):
    name: str
    description: str
    documents: int
    chunks: int


class SearchHit(BaseModel):
    source: str = Field(description="the document's path or name")
    page: int | None = Field(description="the page, for formats with pages")
    score: float = Field(description="fused relevance in [0, 1], higher is better")
    text: str
    doc_id: str
    chunk_id: int
    heading: str | None = None


class DocumentChunk(BaseModel):
    kb: str
    doc_id: str
    chunk_id: int
    source: str
    order: int = Field(description="the chunk's position in its document, from 0")
    page: int | None
    heading: str | None
    text: str
    previous_chunk_id: int | None
    next_chunk_id: int | None


#: Who is calling, from the tool's context (HTTP: the request's bearer key; stdio: the local user).
PrincipalOf = Callable[[Context], Principal]


def _call(work: Callable[[], Any]) -> Any:
    try:
        return work()
    except RagError as exc:  # the message is for the model to read; no traceback in the log
        raise ToolError(f"{exc.code}: {exc.message}") from exc


def build_mcp_server(service: RagService, principal_of: PrincipalOf) -> MCPServer:
    server: MCPServer = MCPServer("rag-knowledge-bases", instructions=INSTRUCTIONS, version="1",
                                  log_level="WARNING")

    @server.tool()
    def list_knowledge_bases(ctx: Context) -> list[KnowledgeBase]:
        """The knowledge bases this key may search, with their document and chunk counts."""
        who = principal_of(ctx)
        _call(lambda: who.check(Role.reader))
        return [KnowledgeBase(name=kb.name, description=kb.description, documents=kb.documents, chunks=kb.chunks)
                for kb in service.list_kbs() if who.may_use(kb.name)]

    @server.tool()
    def search(kb: str, query: str, ctx: Context,
               top_k: Annotated[int, Field(ge=1, le=50, description="how many hits")] = 5) -> list[SearchHit]:
        """Hybrid (keyword + semantic) search of one knowledge base; the best hits first."""
        who = principal_of(ctx)
        _call(lambda: who.check(Role.reader, kb))
        hits = _call(lambda: service.search(kb, query, top_k=top_k))
        return [SearchHit(source=hit.source, page=hit.page, score=round(hit.score, 4), text=hit.text,
                          doc_id=hit.doc_id, chunk_id=hit.chunk_id, heading=hit.heading) for hit in hits]

    @server.tool()
    def read_document_chunk(kb: str, doc_id: str, chunk_id: int, ctx: Context) -> DocumentChunk:
        """One chunk of a document (ids from a search hit), with the ids of the chunks before and after it."""
        who = principal_of(ctx)
        _call(lambda: who.check(Role.reader, kb))
        document = _call(lambda: service.get_document(kb, doc_id))
        chunks = _call(lambda: service.document_chunks(kb, doc_id))
        for position, chunk in enumerate(chunks):
            if chunk.id == chunk_id:
                return DocumentChunk(
                    kb=kb, doc_id=doc_id, chunk_id=chunk.id, source=document.source, order=position,
                    page=chunk.page, heading=chunk.heading, text=chunk.text,
                    previous_chunk_id=chunks[position - 1].id if position > 0 else None,
                    next_chunk_id=chunks[position + 1].id if position + 1 < len(chunks) else None)
        raise ToolError(f"chunk_not_found: document '{doc_id}' in '{kb}' has no chunk {chunk_id}")

    return server


def _bearer_principal(keys: KeyRing) -> PrincipalOf:
    def principal_of(ctx: Context) -> Principal:
        headers = ctx.headers or {}
        try:
            return keys.authenticate(headers.get("authorization"))
        except Unauthorized as exc:  # McpEndpoint already refused it; a second line of defence
            raise ToolError(f"{exc.code}: {exc.message}") from exc

    return principal_of


class McpEndpoint:
    """The ASGI app behind ``/mcp``: checks the bearer key, then hands the request to the SDK.

    ``running()`` must wrap the app's lifetime (the SDK's session manager owns a task group).
    """

    def __init__(self, service: RagService, keys: KeyRing) -> None:
        self.keys = keys
        self.server = build_mcp_server(service, _bearer_principal(keys))
        # Stateless with JSON answers: no session to keep per client, so any worker can answer any
        # request and a proxy sees plain request/response pairs. Hosts are checked by the app itself.
        self.manager = StreamableHTTPSessionManager(app=self.server._lowlevel_server, stateless=True,
                                                    json_response=True, security_settings=None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
            try:
                principal = self.keys.authenticate(headers.get("authorization"))
            except Unauthorized as exc:
                await _send_json(send, 401, {"error": {"code": exc.code, "message": exc.message}},
                                 {"WWW-Authenticate": "Bearer"})
                return
            scope.setdefault("state", {})["principal"] = principal  # the audit log names who asked
        await self.manager.handle_request(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def run_stdio(service: RagService) -> None:
    """``rag mcp``: serve the tools over stdin/stdout until the client closes them."""
    server = build_mcp_server(service, lambda _ctx: ANONYMOUS_ADMIN)
    server.run("stdio")

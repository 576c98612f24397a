"""The MCP server with the official SDK's own client: streamable HTTP on the real server's /mcp (keys,
roles and KB limits applied) and `rag mcp` over stdio in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.ecosystem_server import READER_HANDBOOK, EcosystemServer, ecosystem_server

TOOLS = {"list_knowledge_bases", "search", "read_document_chunk"}


@pytest.fixture(scope="module")
def eco() -> EcosystemServer:
    return ecosystem_server()


def http_client(eco: EcosystemServer, key: str | None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = streamable_http_client(f"{eco.base_url}/mcp",
                                       http_client=httpx2.AsyncClient(headers=headers, timeout=120))
    return Client(transport)


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    content = result.structured_content
    return content.get("result", content) if isinstance(content, dict) else content


def test_http_session(eco: EcosystemServer) -> None:
    async def session() -> dict[str, Any]:
        async with http_client(eco, READER_HANDBOOK) as client:
            tools = await client.list_tools()
            kbs = structured(await client.call_tool("list_knowledge_bases", {}))
            hits = structured(await client.call_tool(
                "search", {"kb": eco.kb, "query": "How many days of paid vacation?", "top_k": 2}))
            first = hits[0]
            chunk = structured(await client.call_tool(
                "read_document_chunk", {"kb": eco.kb, "doc_id": first["doc_id"], "chunk_id": first["chunk_id"]}))
            forbidden = await client.call_tool("search", {"kb": eco.other_kb, "query": "parking"})
            unknown = await client.call_tool("search", {"kb": "no-such-kb", "query": "x"})
            return {"tools": tools, "kbs": kbs, "hits": hits, "chunk": chunk, "forbidden": forbidden,
                    "unknown": unknown}

    got = asyncio.run(session())
    assert {tool.name for tool in got["tools"].tools} == TOOLS
    search_tool = next(tool for tool in got["tools"].tools if tool.name == "search")
    assert {"kb", "query", "top_k"} <= set(search_tool.input_schema["properties"])
    assert [kb["name"] for kb in got["kbs"]] == [eco.kb]  # the key is limited to handbook
    assert got["kbs"][0]["documents"] == 3
    hits = got["hits"]
    assert 1 <= len(hits) <= 2 and hits[0]["source"] == "handbook/vacation.txt"
    assert "25 days of paid vacation" in hits[0]["text"] and 0 < hits[0]["score"] <= 1
    assert set(hits[0]) >= {"source", "page", "score", "text"}
    assert got["chunk"]["text"] == hits[0]["text"] and got["chunk"]["source"] == "handbook/vacation.txt"
    assert got["forbidden"].is_error and "may not use" in got["forbidden"].content[0].text
    assert got["unknown"].is_error


def test_http_needs_a_key(eco: EcosystemServer) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "test", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    for key in (None, "not-a-key"):
        sent = {**headers, **({"Authorization": f"Bearer {key}"} if key else {})}
        response = httpx2.post(f"{eco.base_url}/mcp", json=initialize, headers=sent, timeout=30)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def without_key() -> None:
        async with http_client(eco, None) as client:
            await client.list_tools()

    with pytest.raises(Exception):  # noqa: B017  (the SDK wraps the 401 in its own error types)
        asyncio.run(without_key())


def test_stdio(eco: EcosystemServer) -> None:
    rag = str(Path(sys.executable).with_name("rag"))
    env = {"RAG_HOME": str(eco.server.home), "HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "")}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    async def session() -> tuple[set[str], list[str], list[dict[str, Any]]]:
        async with Client(StdioServerParameters(command=rag, args=["mcp"], env=env), read_timeout_seconds=180) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            kbs = [kb["name"] for kb in structured(await client.call_tool("list_knowledge_bases", {}))]
            hits = structured(await client.call_tool("search", {"kb": eco.kb, "query": "Temple House hotel price"}))
            return tools, kbs, hits

    tools, kbs, hits = asyncio.run(session())
    assert tools == TOOLS
    assert sorted(kbs) == sorted([eco.kb, eco.other_kb])  # stdio: the local user's own KBs, all of them
    assert hits[0]["source"] == "travel/chengdu.md" and "1,800 yuan" in hits[0]["text"]

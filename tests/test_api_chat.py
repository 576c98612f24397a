"""Chat over the real server with the real bundled LLM: our SSE format and the official openai client."""

from __future__ import annotations

import io
import json

import pytest
import requests
from api_server import RunningServer, wait_for_job
from conftest import SAMPLE_DOCS

from tests.shared_servers import PLAIN, SharedServers

pytestmark = pytest.mark.slow

QUESTION = "How many days of paid vacation does an employee get per year?"


@pytest.fixture(scope="module")
def server(shared_servers: SharedServers) -> RunningServer:
    running = shared_servers.get(PLAIN)  # shared with test_security_browser; the KB "handbook" is this module's
    base = running.base_url
    assert requests.post(f"{base}/api/kbs", json={"name": "handbook"}, timeout=30).status_code == 201
    files = [("files", (name, io.BytesIO(text.encode()))) for name, text in SAMPLE_DOCS.items()]
    job_id = requests.post(f"{base}/api/kbs/handbook/documents", files=files, timeout=60).json()["job_id"]
    assert wait_for_job(base, job_id)["status"] == "succeeded"
    running.wait_ready()
    return running


def sse_payloads(response: requests.Response) -> list[str]:
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.iter_lines(decode_unicode=True) if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line[len("data: "):] for line in lines]


def test_kb_chat_json_and_sse(server: RunningServer) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 24, "temperature": 0}
    answer = requests.post(f"{server.base_url}/api/kbs/handbook/chat", json=body, timeout=300).json()
    assert answer["grounded"] is True and answer["answer"]
    assert "handbook/vacation.txt" in {citation["source"] for citation in answer["citations"]}

    with requests.post(f"{server.base_url}/api/kbs/handbook/chat", json={**body, "stream": True}, stream=True,
                       timeout=300) as response:
        payloads = sse_payloads(response)
    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    assert events[0]["type"] == "sources" and events[0]["sources"]
    tokens = [e["text"] for e in events if e["type"] == "token"]
    done = events[-1]
    assert tokens and done["type"] == "done"
    assert done["answer"] == "".join(tokens).strip()
    assert done["grounded"] and done["citations"]


def test_openai_client_kb_model_stream_and_not(server: RunningServer) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    messages = [{"role": "user", "content": QUESTION}]
    completion = client.chat.completions.create(model="kb:handbook", messages=messages, max_tokens=24, temperature=0)
    assert completion.object == "chat.completion" and completion.model == "kb:handbook"
    assert completion.choices[0].message.role == "assistant" and completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    sources = completion.model_extra["sources"]
    assert "handbook/vacation.txt" in {source["source"] for source in sources}
    assert completion.usage.total_tokens > 0

    chunks = list(client.chat.completions.create(model="kb:handbook", messages=messages, max_tokens=24,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text.strip()
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert all(chunk.choices[0].finish_reason is None for chunk in chunks[:-1])
    assert "handbook/vacation.txt" in {source["source"] for source in final.model_extra["sources"]}


def test_raw_openai_stream_ends_with_done_and_plain_llm_model(server: RunningServer) -> None:
    import openai

    models = [m.id for m in openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x").models.list()]
    llm = next(m for m in models if not m.startswith("kb:"))
    body = {"model": llm, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "stream": True}
    with requests.post(f"{server.base_url}/v1/chat/completions", json=body, stream=True, timeout=300) as response:
        raw = response.text
    assert raw.endswith("data: [DONE]\n\n")
    events = [json.loads(block[len("data: "):]) for block in raw.strip().split("\n\n")[:-1]]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert "sources" not in events[-1]  # a plain model id chats without retrieval
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events).strip()


def test_a_filter_changes_the_sources_of_chat_and_of_the_openai_endpoint(server: RunningServer) -> None:
    import openai

    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 24, "temperature": 0, "stream": True,
            "filter": {"source": "travel/*"}}
    with requests.post(f"{server.base_url}/api/kbs/handbook/chat", json=body, stream=True, timeout=300) as response:
        events = [json.loads(p) for p in sse_payloads(response)[:-1]]
    # The vacation policy is not among the documents searched: the answer cannot come from it.
    assert all(hit["source"].startswith("travel/") for hit in events[0]["sources"])
    assert all(c["source"].startswith("travel/") for c in events[-1]["citations"])

    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    completion = client.chat.completions.create(
        model="kb:handbook", messages=[{"role": "user", "content": QUESTION}], max_tokens=24, temperature=0,
        extra_body={"filter": {"source": "handbook/*", "format": "txt"}})
    sources = completion.model_extra["sources"]
    assert sources and {source["source"] for source in sources} == {"handbook/vacation.txt"}
    bad = requests.post(f"{server.base_url}/api/kbs/handbook/chat",
                        json={**body, "filter": {"modified_after": "soon"}}, timeout=30)
    assert bad.status_code == 422 and "filter.modified_after" in bad.json()["error"]["message"]

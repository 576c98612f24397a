"""Conversations and feedback: the store on a real catalog, and the REST routes on the real server with keys."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_server import RunningServer, start_server

from rag.errors import ConversationNotFound, InvalidInput
from rag.qa import load_questions
from rag.store.catalog import Catalog
from rag.store.conversations import AnswerRecord, ConversationStore

KEYS = {"admin": "adm-c0nv-1234", "alice": "alice-c0nv-5678", "bob": "bob-c0nv-9012", "other": "oth-c0nv-3456"}
RAG_API_KEYS = ";".join([f"{KEYS['admin']}:admin::ops", f"{KEYS['alice']}:reader::alice",
                         f"{KEYS['bob']}:reader::bob", f"{KEYS['other']}:reader:elsewhere:other-team"])
RAG = str(Path(sys.executable).with_name("rag"))
VACATION = ("Vacation policy. Every full-time employee receives 25 days of paid vacation per calendar year. "
            "Unused vacation days can be carried over until March 31 of the following year.")
CHENGDU = ("Chengdu travel notes. We stayed at The Temple House, a luxury hotel next to the Daci Temple. "
           "A double room costs 1,800 yuan per night.")


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def answer_record(kb: str, text: str, model_text: str = "") -> AnswerRecord:
    citation = {"n": 1, "doc_id": "d1", "source": "handbook/vacation.txt", "page": None, "text": "25 days",
                "chunk_id": 1}
    return AnswerRecord(kb, text, True, [citation], [], {"top_k": None, "params": {"temperature": 0}}, model_text)


# -- the store, on a real SQLite catalog -------------------------------------------------------------


def test_store_keeps_owners_apart_and_feedback_outlives_the_conversation(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    store = ConversationStore(catalog)
    mine = store.create("alice", ["handbook"])
    theirs = store.create("bob", ["handbook"], "bob's")
    assert [c.id for c in store.list("alice")] == [mine.id]
    assert {c.id for c in store.list(None)} == {mine.id, theirs.id}
    with pytest.raises(ConversationNotFound):
        store.get(theirs.id, "alice")  # another owner's conversation reads as not found

    answer_id = store.add_exchange(mine.id, "How many vacation days?", answer_record("handbook", "25 days [1]."),
                                   title="How many vacation days?")
    assert store.get(mine.id).title == "How many vacation days?"  # the first question names it
    store.add_exchange(mine.id, "And sick leave?", answer_record("handbook", "See [1]."), title="And sick leave?")
    assert store.get(mine.id).title == "How many vacation days?"  # later questions do not rename it
    messages = store.messages(mine.id)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1].citations[0]["source"] == "handbook/vacation.txt" and messages[1].grounded is True

    with pytest.raises(ConversationNotFound):
        store.set_feedback(mine, messages[0].id, "up")  # a question cannot be rated, only an answer
    with pytest.raises(InvalidInput):
        store.set_feedback(mine, answer_id, "meh")  # type: ignore[arg-type]
    store.set_feedback(mine, answer_id, "down", "wrong number")
    store.set_feedback(mine, answer_id, "up", "fine after all")  # rating again replaces the first
    [record] = store.feedback("handbook")
    assert (record.rating, record.comment, record.question) == ("up", "fine after all", "How many vacation days?")
    assert record.answer == "25 days [1]." and record.sources[0]["source"] == "handbook/vacation.txt"

    store.delete(mine.id)
    assert store.messages(mine.id) == [] and store.list("alice") == []
    assert len(store.feedback("handbook", "up")) == 1 and store.feedback("handbook", "down") == []
    catalog.close()

    reopened = Catalog(tmp_path / "catalog.db")  # a second open (a restart) keeps everything, creates nothing twice
    assert [c.id for c in ConversationStore(reopened).list("bob")] == [theirs.id]
    reopened.close()


def test_exported_feedback_is_a_question_file_rag_eval_reads(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    store = ConversationStore(catalog)
    conversation = store.create("alice", ["handbook"])
    liked = store.add_exchange(conversation.id, "How many vacation days?", answer_record("handbook", "25 days. [1]\n\nSource text: \"…25 days…\" [1]", "25 days. [1]"))
    disliked = store.add_exchange(conversation.id, "年假可以顺延吗？", answer_record("handbook", "不知道。"))
    corrected = store.add_exchange(conversation.id, "When do carried-over days expire?",
                                   answer_record("handbook", "Never."))
    store.set_feedback(conversation, liked, "up")
    store.set_feedback(conversation, disliked, "down", "missed it")
    store.set_feedback(conversation, corrected, "down", "wrong", expected="March 31")
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(r.to_question(), ensure_ascii=False) + "\n" for r in store.feedback()),
                    encoding="utf-8")
    questions = {q.question: q for q in load_questions(path)}
    up = questions["How many vacation days?"]
    assert up.answers == ("25 days. [1]",)  # the model's text, without the quoted evidence
    assert up.doc == "handbook/vacation.txt" and up.category == "en"
    down = questions["年假可以顺延吗？"]
    assert down.answers == () and down.doc is None and down.category == "zh"  # not "none": it should be answered
    assert questions["When do carried-over days expire?"].answers == ("March 31",)
    catalog.close()


def test_a_liked_quoted_fallback_exports_the_quote_not_the_rejected_model_text(service) -> None:  # type: ignore[no-untyped-def]
    from rag.types import Answer, Citation

    service.create_kb("handbook")
    conversation = service.create_conversation("alice", ["handbook"])
    quote = "The documents say: “Unused vacation days can be carried over until March 31.” [1]"
    fallback = Answer(quote, True, [Citation(1, "d1", "handbook/vacation.txt", None, "carried over until March 31")],
                      generated="They expire at the end of the year. [1]", fallback=True)
    answered = Answer("25 days. [1]", True, [], generated="25 days. [1]")
    quoted_id = service.record_exchange(conversation.id, "alice", "Until when can days be carried over?", fallback,
                                        ["handbook"])
    answered_id = service.record_exchange(conversation.id, "alice", "How many vacation days?", answered, ["handbook"])
    service.rate_answer(conversation.id, "alice", quoted_id, "up")
    service.rate_answer(conversation.id, "alice", answered_id, "up")
    gold = {r.question: r.to_question()["answers"] for r in service.feedback("handbook")}
    assert gold == {"Until when can days be carried over?": [quote], "How many vacation days?": ["25 days. [1]"]}


# -- the REST routes on the real server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("conversations") / "home", {"RAG_API_KEYS": RAG_API_KEYS})
    base = running.base_url
    assert requests.post(f"{base}/api/kbs", json={"name": "handbook"}, headers=auth("admin"), timeout=30).status_code == 201
    files = [("files", ("handbook/vacation.txt", io.BytesIO(VACATION.encode())))]
    uploaded = requests.post(f"{base}/api/kbs/handbook/documents?wait=true", files=files, headers=auth("admin"),
                             timeout=300)
    assert uploaded.status_code == 201, uploaded.text
    assert requests.post(f"{base}/api/kbs", json={"name": "travel"}, headers=auth("admin"), timeout=30).status_code == 201
    files = [("files", ("trips/chengdu.md", io.BytesIO(CHENGDU.encode())))]
    uploaded = requests.post(f"{base}/api/kbs/travel/documents?wait=true", files=files, headers=auth("admin"),
                             timeout=300)
    assert uploaded.status_code == 201, uploaded.text
    yield running
    running.stop()


def test_conversation_routes_owners_and_feedback(server: RunningServer) -> None:
    base = server.base_url
    created = requests.post(f"{base}/api/conversations", json={"kbs": ["handbook"]}, headers=auth("alice"), timeout=30)
    assert created.status_code == 201, created.text
    conversation = created.json()
    assert conversation["owner"] == "alice" and conversation["kbs"] == ["handbook"] and conversation["title"] == ""
    cid = conversation["id"]
    # An exchange as the chat path stores it (the answering itself is tested below, once, with the real LLM).
    catalog = Catalog(server.home / "catalog.sqlite")
    answer_id = ConversationStore(catalog).add_exchange(cid, "How many vacation days?",
                                                        answer_record("handbook", "25 days [1]."),
                                                        title="How many vacation days?")
    catalog.close()

    assert [c["id"] for c in requests.get(f"{base}/api/conversations", headers=auth("alice"),
                                          timeout=30).json()["conversations"]] == [cid]
    assert requests.get(f"{base}/api/conversations", headers=auth("bob"), timeout=30).json()["conversations"] == []
    assert cid in [c["id"] for c in requests.get(f"{base}/api/conversations", headers=auth("admin"),
                                                 timeout=30).json()["conversations"]]
    for method, path, body in (("GET", "", None), ("PATCH", "", {"title": "x"}), ("DELETE", "", None),
                               ("POST", "/messages", {"content": "hi"}),
                               ("POST", f"/messages/{answer_id}/feedback", {"rating": "up"})):
        refused = requests.request(method, f"{base}/api/conversations/{cid}{path}", json=body, headers=auth("bob"),
                                   timeout=30)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "conversation_not_found", path

    detail = requests.get(f"{base}/api/conversations/{cid}", headers=auth("alice"), timeout=30).json()
    assert detail["title"] == "How many vacation days?"
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [("user", "How many vacation days?"),
                                                                      ("assistant", "25 days [1].")]
    assert detail["messages"][1]["citations"][0]["source"] == "handbook/vacation.txt"
    renamed = requests.patch(f"{base}/api/conversations/{cid}", json={"title": "Vacation"}, headers=auth("alice"),
                             timeout=30)
    assert renamed.status_code == 200 and renamed.json()["title"] == "Vacation"

    feedback_url = f"{base}/api/conversations/{cid}/messages/{answer_id}/feedback"
    assert requests.post(feedback_url, json={"rating": "meh"}, headers=auth("alice"), timeout=30).status_code == 422
    missing = requests.post(f"{base}/api/conversations/{cid}/messages/999999/feedback", json={"rating": "up"},
                            headers=auth("alice"), timeout=30)
    assert missing.status_code == 404
    rated = requests.post(feedback_url, json={"rating": "down", "comment": "it is 25 working days"},
                          headers=auth("alice"), timeout=30)
    assert rated.status_code == 200 and rated.json() == {"message_id": answer_id, "rating": "down",
                                                         "comment": "it is 25 working days"}
    detail = requests.get(f"{base}/api/conversations/{cid}", headers=auth("admin"), timeout=30).json()
    assert detail["messages"][1]["rating"] == "down"  # the admin sees alice's conversation and its rating

    env = {**os.environ, "RAG_HOME": str(server.home)}
    export = server.home.parent / "feedback.jsonl"
    exported = subprocess.run([RAG, "feedback", "export", "--kb", "handbook", "--rating", "down", str(export)],
                              capture_output=True, text=True, env=env, timeout=120)
    assert exported.returncode == 0, exported.stderr
    [question] = load_questions(export)
    assert question.question == "How many vacation days?" and question.category == "en"
    bad = subprocess.run([RAG, "feedback", "export", "--kb", "handbook", "--rating", "meh", str(export)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and "--rating must be up or down" in bad.stderr and "Traceback" not in bad.stderr

    deleted = requests.delete(f"{base}/api/conversations/{cid}", headers=auth("alice"), timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"id": cid, "deleted": True}
    assert requests.get(f"{base}/api/conversations/{cid}", headers=auth("alice"), timeout=30).status_code == 404

    lines = [line.split("rag.audit: ", 1)[1] for line in server.log().splitlines() if "rag.audit: " in line]
    assert any(line.startswith("action=conversation.create key=alice kb=handbook outcome=ok status=201")
               for line in lines)
    assert any(line.startswith("action=feedback key=alice kb=handbook outcome=ok status=200") for line in lines)
    assert any(line.startswith("action=conversation.delete key=bob") and "outcome=rejected status=404" in line
               for line in lines)


def test_bad_conversation_requests_are_clear_4xx(server: RunningServer) -> None:
    base = server.base_url
    cases = [({"kbs": []}, 422), ({"kbs": [f"kb{i}" for i in range(17)]}, 422), ({"kbs": ["handbook", "b"]}, 404),
             ({"kbs": ["nope"]}, 404), ({"title": "x"}, 422)]
    for body, status in cases:
        response = requests.post(f"{base}/api/conversations", json=body, headers=auth("alice"), timeout=30)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["message"]
    limited = requests.post(f"{base}/api/conversations", json={"kbs": ["handbook"]}, headers=auth("other"), timeout=30)
    assert limited.status_code == 403  # a key limited to other KBs cannot start one here
    cid = requests.post(f"{base}/api/conversations", json={"kbs": ["handbook"]}, headers=auth("alice"),
                        timeout=30).json()["id"]
    assert requests.patch(f"{base}/api/conversations/{cid}", json={"title": ""}, headers=auth("alice"),
                          timeout=30).status_code == 422
    assert requests.post(f"{base}/api/conversations/{cid}/messages", json={"content": ""}, headers=auth("alice"),
                         timeout=30).status_code == 422
    assert requests.get(f"{base}/api/conversations", timeout=30).status_code == 401


@pytest.mark.slow
def test_asking_in_a_conversation_streams_stores_and_follows_up(server: RunningServer) -> None:
    """The real LLM, twice: a streamed question, then a follow-up answered with the stored history."""
    base = server.base_url
    server.wait_ready(headers=auth("admin"))
    cid = requests.post(f"{base}/api/conversations", json={"kbs": ["handbook"]}, headers=auth("bob"),
                        timeout=30).json()["id"]
    body = {"content": "How many days of paid vacation does an employee get per year?", "stream": True,
            "max_tokens": 24, "temperature": 0}
    with requests.post(f"{base}/api/conversations/{cid}/messages", json=body, headers=auth("bob"), stream=True,
                       timeout=600) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        payloads = [line[len("data: "):] for line in response.iter_lines(decode_unicode=True) if line]
    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    assert events[0]["type"] == "sources" and events[-1]["type"] == "done", events[-1]
    done = events[-1]
    assert isinstance(done["message_id"], int) and done["citations"]

    follow_up = requests.post(f"{base}/api/conversations/{cid}/messages",
                              json={"content": "Can unused ones be carried over?", "max_tokens": 24,
                                    "temperature": 0}, headers=auth("bob"), timeout=600)
    assert follow_up.status_code == 200, follow_up.text
    answer = follow_up.json()
    assert {"answer", "grounded", "citations", "message_id"} <= answer.keys()
    assert answer["message_id"] > done["message_id"]

    detail = requests.get(f"{base}/api/conversations/{cid}", headers=auth("bob"), timeout=30).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]
    assert detail["messages"][1]["id"] == done["message_id"] and detail["messages"][1]["content"] == done["answer"]
    assert detail["title"] == body["content"]


def completion(base: str, who: str, **body: object) -> requests.Response:
    question = "How many days of paid vacation does an employee get, and what does a double room cost?"
    payload = {"model": "kb:handbook+travel", "messages": [{"role": "user", "content": question}], "max_tokens": 24,
               "temperature": 0, **body}
    return requests.post(f"{base}/v1/chat/completions", json=payload, headers=auth(who), timeout=600)


def test_v1_refuses_bad_conversation_ids_before_answering(server: RunningServer) -> None:
    base = server.base_url
    cid = requests.post(f"{base}/api/conversations", json={"kbs": ["handbook", "travel"]}, headers=auth("alice"),
                        timeout=30).json()["id"]
    stranger = completion(base, "bob", conversation_id=cid)  # alice's conversation: bob cannot write to it
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "conversation_not_found"
    limited = completion(base, "other", conversation_id=cid)  # a key for other KBs: 403 naming a KB it cannot read
    assert limited.status_code == 403 and "'handbook'" in limited.json()["error"]["message"]
    plain = completion(base, "alice", model="some-llm", conversation_id=cid)
    assert plain.status_code == 422 and "conversation_id" in plain.json()["error"]["message"]
    filtered_plain = completion(base, "alice", model="some-llm", filter={"source": "*"})
    assert filtered_plain.status_code == 422
    bad_filter = completion(base, "alice", filter={"colour": "red"})
    assert bad_filter.status_code == 422 and "filter.colour" in bad_filter.json()["error"]["message"]
    empty = completion(base, "alice", model="kb:handbook+")
    assert empty.status_code == 422
    assert requests.get(f"{base}/api/conversations/{cid}", headers=auth("alice"), timeout=30).json()["messages"] == []


@pytest.mark.slow
def test_v1_over_two_kbs_records_the_exchange_in_the_callers_conversation(server: RunningServer) -> None:
    """Stateless /v1 (the client sends the history) with the conversation_id extension: the exchange is stored."""
    base = server.base_url
    server.wait_ready(headers=auth("admin"))
    cid = requests.post(f"{base}/api/conversations", json={"kbs": ["handbook", "travel"]}, headers=auth("alice"),
                        timeout=30).json()["id"]
    response = completion(base, "alice", conversation_id=cid)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["message_id"], int)
    assert {source["kb"] for source in body["sources"]} <= {"handbook", "travel"} and body["sources"], json.dumps(body)[:1200]
    detail = requests.get(f"{base}/api/conversations/{cid}", headers=auth("alice"), timeout=30).json()
    user, assistant = detail["messages"]
    assert user["role"] == "user" and user["content"].startswith("How many days of paid vacation")
    assert assistant["id"] == body["message_id"]
    assert assistant["content"].strip() == body["choices"][0]["message"]["content"]
    assert [c["source"] for c in assistant["citations"]] == [s["source"] for s in body["sources"]]
    # Feedback works on it like on any answer of the conversation.
    rated = requests.post(f"{base}/api/conversations/{cid}/messages/{body['message_id']}/feedback",
                          json={"rating": "up"}, headers=auth("alice"), timeout=30)
    assert rated.status_code == 200, rated.text


@pytest.mark.slow
def test_a_conversation_over_two_kbs_answers_from_the_filtered_documents(server: RunningServer) -> None:
    base = server.base_url
    server.wait_ready(headers=auth("admin"))
    cid = requests.post(f"{base}/api/conversations", json={"kbs": ["handbook", "travel"]}, headers=auth("bob"),
                        timeout=30).json()["id"]
    body = {"content": "What does a double room at The Temple House cost per night?", "stream": True,
            "max_tokens": 24, "temperature": 0, "filter": {"source": "trips/*"}}
    with requests.post(f"{base}/api/conversations/{cid}/messages", json=body, headers=auth("bob"), stream=True,
                       timeout=600) as response:
        assert response.status_code == 200, response.text
        payloads = [line[len("data: "):] for line in response.iter_lines(decode_unicode=True) if line]
    events = [json.loads(p) for p in payloads[:-1]]
    sources = events[0]["sources"]
    assert sources and all(hit["source"].startswith("trips/") and hit["kb"] == "travel" for hit in sources)
    done = events[-1]
    assert done["type"] == "done" and all(c["kb"] == "travel" for c in done["citations"])
    bad = requests.post(f"{base}/api/conversations/{cid}/messages", json={**body, "filter": {"tags": [""]}},
                        headers=auth("bob"), timeout=30)
    assert bad.status_code == 422 and "filter.tags" in bad.json()["error"]["message"]

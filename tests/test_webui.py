"""End-to-end tests of the web UI: a real server on localhost, headless Chromium, the bundled models."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import uvicorn
from playwright.sync_api import expect

from tests.conftest import SAMPLE_DOCS

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ANSWER_TIMEOUT_MS = 240_000
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
LOAD_EVENTS = 5  # webui/app.py: on_load, restore, documents, filter choices, document detail


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object, Path]]:
    """The real app (API + UI at /ui) under uvicorn; a KB "travel" with the English and Chinese travel notes."""
    from rag.api.app import create_app
    from rag.config import load_settings
    from rag.service import RagService

    root = tmp_path_factory.mktemp("webui")
    docs = root / "docs"
    for relative in ("travel/chengdu.md", "travel/成都美食.txt", "handbook/vacation.txt"):
        path = docs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SAMPLE_DOCS[relative], encoding="utf-8")
    # Short answers keep the bundled LLM quick; the settings panel must show this server default.
    settings = load_settings(home=root / "home", llm={"max_tokens": 48})
    service = RagService(settings)
    service.create_kb("travel", "travel notes")
    service.ingest("travel", [docs / "travel"])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}/ui/", service, docs
    server.should_exit = True
    thread.join(timeout=10)
    service.catalog.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_ui(browser, url: str, locale: str = "en-US"):  # type: ignore[no-untyped-def]
    """A page on the UI that records (and blocks) any request leaving localhost."""
    context = browser.new_context(locale=locale, viewport={"width": 1400, "height": 1000})
    outside: list[str] = []

    def guard(route) -> None:  # type: ignore[no-untyped-def]
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    goto_ui(page, url)
    return page, outside


def goto_ui(page, url: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Load (``url``) or reload the page and wait for its load events: the browser language and a fresh KB
    list, what the address reopens (conversation, document), the documents, the filter choices, the detail."""
    answered: list[str] = []

    def seen(response) -> None:  # type: ignore[no-untyped-def]
        if "/gradio_api/run/predict" in response.url:
            answered.append(response.url)

    page.on("response", seen)
    if url is None:
        page.reload()
    else:
        page.goto(url)
    deadline = time.monotonic() + 30
    while len(answered) < LOAD_EVENTS and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    page.remove_listener("response", seen)
    assert len(answered) >= LOAD_EVENTS, f"the UI's load events did not run ({len(answered)} of {LOAD_EVENTS})"


def choose(page, elem_id: str, option: str) -> None:  # type: ignore[no-untyped-def]
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def table_cells(page, table_id: str, text: str):  # type: ignore[no-untyped-def]
    return page.locator(f"#{table_id} [data-testid^='cell-']").get_by_text(text, exact=True)


def bot_messages(page):  # type: ignore[no-untyped-def]
    return page.locator("#chatbot .message-row.bot-row")


def ask(page, question: str) -> tuple[str, list[int]]:  # type: ignore[no-untyped-def]
    """Send a question; return the final answer's text and the lengths of the partial answers seen on the way."""
    before = bot_messages(page).count()
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()
    answer = bot_messages(page).nth(before)
    answer.wait_for(timeout=30_000)
    lengths: list[int] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        if answer.locator(".rag-sources, .rag-not-covered").count():
            break
        lengths.append(len(answer.inner_text()))
        time.sleep(0.05)
    else:
        pytest.fail(f"no complete answer within {ANSWER_TIMEOUT_MS} ms to {question!r}")
    return answer.inner_text(), lengths


def last_answer(page):  # type: ignore[no-untyped-def]
    return bot_messages(page).last


SCREENSHOTS = os.environ.get("RAG_UI_SCREENSHOTS")  # a folder: the tests also save the docs' screenshots


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"screenshot-{name}.png"))


def test_upload_then_ask_streams_an_answer_with_sources_and_a_follow_up(ui_server, browser) -> None:
    url, service, docs = ui_server
    page, outside = open_ui(browser, url)
    assert page.locator("#setting-max-tokens input[type=number]").input_value() == "48"

    page.get_by_role("tab", name="Documents").click()
    page.locator("#kb-admin").get_by_text("Knowledge bases").click()
    page.locator("#new-kb-name").locator("input, textarea").first.fill("handbook")
    page.locator("#create-kb").click()
    page.locator("#kb-result").get_by_text("Created knowledge base handbook").wait_for()
    # The selector switches to the new KB in a follow-up event, just after the confirmation shows.
    expect(page.locator("#kb-select input")).to_have_value("handbook", timeout=15_000)

    broken = docs / "broken.pdf"
    broken.write_bytes(b"this is not a PDF")
    page.locator("#upload-files input[type=file]").set_input_files(
        [str(docs / "handbook/vacation.txt"), str(broken)]
    )
    # Gradio renders a file's stem and extension in separate elements.
    page.locator("#upload-files").get_by_text("broken", exact=True).wait_for()
    page.locator("#add-files").click()
    result = page.locator("#upload-result")
    expect(result).to_contain_text(re.compile(r"added"), timeout=120_000)  # the report, not the progress line
    assert re.search(r"1\s+added.*1\s+failed", result.inner_text())
    assert "❌ broken.pdf" in result.inner_text()
    table_cells(page, "documents-table", "vacation.txt").first.wait_for()
    assert [d.source for d in service.list_documents("handbook") if d.status == "indexed"] == ["vacation.txt"]

    page.get_by_role("tab", name="Chat").click()
    text, lengths = ask(page, "How many days of paid vacation does a full-time employee get?")
    # Answers are released a checked sentence at a time (rag/chat.py): a one-sentence answer appears whole,
    # after the "Searching the documents …" state that shows the work in progress.
    assert any(n > 0 for n in lengths), f"nothing was shown before the answer: {lengths}"
    answer = last_answer(page)
    sources = answer.locator("details.rag-source")
    assert sources.count() >= 1
    assert "vacation.txt" in sources.first.locator("summary").inner_text()
    # Each source's summary starts with its "[n]", the number the answer's markers use.
    numbers = [int(re.match(r"\[(\d+)\]", t.strip()).group(1))  # type: ignore[union-attr]
               for t in sources.locator("summary").all_inner_texts()]
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", text.split("Sources")[0])}
    assert markers <= set(numbers) or not markers
    snippet = sources.first.locator(".rag-snippet")
    assert not snippet.is_visible()
    sources.first.locator("summary").click()
    assert "25 days of paid vacation" in snippet.inner_text()

    text, _ = ask(page, "Until when can the unused ones be carried over?")
    assert bot_messages(page).count() == 2
    follow_up = last_answer(page).locator("details.rag-source summary")
    assert follow_up.count() >= 1 and "vacation.txt" in follow_up.first.inner_text()
    assert outside == [], f"requests left localhost: {outside}"


def test_chinese_page_question_and_answer(ui_server, browser) -> None:
    url, _service, _docs = ui_server
    page, outside = open_ui(browser, url, locale="zh-CN")
    page.get_by_role("tab", name="💬 对话").wait_for()  # the browser's language chose the Chinese UI
    assert page.locator("#send").inner_text().strip() == "发送"
    choose(page, "kb-select", "travel")
    text, _ = ask(page, "蜀九香火锅两个人吃一顿大约多少钱？")
    summaries = last_answer(page).locator("details.rag-source summary").all_inner_texts()
    assert any("成都美食.txt" in s for s in summaries), summaries
    assert re.search(r"[\u4e00-\u9fff]", text.split("来源")[0]), text
    assert "来源" in text

    choose(page, "language", "English")  # switchable at any time
    page.get_by_role("tab", name="💬 Chat").wait_for()
    assert page.locator("#send").inner_text().strip() == "Send"
    assert outside == [], f"requests left localhost: {outside}"


def test_question_the_documents_do_not_cover(ui_server, browser) -> None:
    url, _service, _docs = ui_server
    page, outside = open_ui(browser, url)
    choose(page, "kb-select", "travel")
    ask(page, "What is the boiling point of liquid nitrogen in kelvin?")
    answer = last_answer(page)
    assert answer.locator(".rag-not-covered").inner_text().startswith("📭")
    assert "do not cover this question" in answer.inner_text()
    assert answer.locator("details.rag-source").count() == 0
    assert outside == [], f"requests left localhost: {outside}"


def test_delete_a_document_and_see_it_gone(ui_server, browser) -> None:
    url, service, docs = ui_server
    service.create_kb("scratch")
    service.ingest("scratch", [docs / "handbook/vacation.txt", docs / "travel/chengdu.md"])
    page, outside = open_ui(browser, url)
    choose(page, "kb-select", "scratch")
    page.get_by_role("tab", name="Documents").click()
    table_cells(page, "documents-table", "chengdu.md").first.wait_for()
    screenshot(page, "documents")
    choose(page, "delete-choice", "chengdu.md")
    page.locator("#delete-doc").click()
    page.locator("#delete-result").get_by_text("Deleted chengdu.md").wait_for()
    expect(table_cells(page, "documents-table", "chengdu.md")).to_have_count(0)
    expect(table_cells(page, "documents-table", "vacation.txt")).to_have_count(1)
    assert [d.source for d in service.list_documents("scratch")] == ["vacation.txt"]
    assert all(hit.source != "chengdu.md" for hit in service.search("scratch", "Chengdu hot pot restaurant"))
    assert outside == [], f"requests left localhost: {outside}"


# -- conversations, feedback, document detail, filters (issue 16) ------------------------------------------

OWNER = "local"  # the owner of the UI's conversations when it asks for no login (webui/conversations.py)
POLICY_DOCS = {
    "policy-2024.txt": "Vacation policy 2024. Every full-time employee receives 20 days of paid vacation per year.",
    "policy-2025.txt": "Vacation policy 2025. Every full-time employee receives 25 days of paid vacation per year.",
}


@pytest.fixture(scope="module")
def answered(ui_server) -> tuple[str, int, object]:  # type: ignore[no-untyped-def]
    """A stored conversation in "travel" with one cited answer, asked through the service as the UI asks."""
    _url, service, _docs = ui_server
    conversation = service.create_conversation(OWNER, ["travel"])
    answer, message_id = service.ask_in_conversation(
        conversation.id, OWNER, "How much does a hot pot dinner for two at Shu Jiu Xiang cost?")
    assert answer.grounded and answer.citations, answer
    return conversation.id, message_id, answer


def sidebar(page):  # type: ignore[no-untyped-def]
    return page.locator("#conversation-list")


def conversation_in_url(page) -> str:  # type: ignore[no-untyped-def]
    return parse_qs(urlparse(page.url).query).get("conversation", [""])[0]


def test_a_conversation_survives_a_reload_and_can_be_renamed_reopened_deleted(ui_server, browser) -> None:
    url, service, _docs = ui_server
    page, outside = open_ui(browser, url)
    choose(page, "kb-select", "travel")
    text, _ = ask(page, "How much does a double room at The Temple House cost per night?")
    expect(page).to_have_url(re.compile(r"[?&]conversation=[0-9a-f]{32}"), timeout=15_000)
    cid = conversation_in_url(page)
    conversation, messages = service.get_conversation(cid, OWNER)
    assert [m.role for m in messages] == ["user", "assistant"]  # stored through the service
    assert conversation.title.startswith("How much does a double room") and conversation.kbs == ["travel"]
    expect(sidebar(page)).to_contain_text("How much does a double room")
    title_box = page.locator("#conversation-title").locator("input, textarea").first
    expect(title_box).to_have_value(re.compile("^How much does a double room"))  # the title, ready to edit
    screenshot(page, "chat")

    goto_ui(page)  # a reload: the address brings the conversation back
    expect(bot_messages(page)).to_have_count(1, timeout=15_000)
    assert last_answer(page).inner_text() == text
    assert conversation_in_url(page) == cid
    expect(sidebar(page).locator("input:checked")).to_have_count(1)
    expect(page.locator("#kb-select input")).to_have_value("travel")

    title_box.fill("Temple House prices")
    page.locator("#rename-conversation").click()
    expect(page.locator("#conversation-status")).to_contain_text("Renamed")
    expect(sidebar(page)).to_contain_text("Temple House prices")
    assert service.get_conversation(cid, OWNER)[0].title == "Temple House prices"

    page.locator("#clear-chat").click()  # a new conversation: empty chat, the old one stays listed
    expect(bot_messages(page)).to_have_count(0)
    expect(page).not_to_have_url(re.compile("conversation="))
    sidebar(page).get_by_text("Temple House prices").click()
    expect(bot_messages(page)).to_have_count(1)
    expect(page).to_have_url(re.compile(f"conversation={cid}"))

    page.locator("#delete-conversation").click()
    expect(bot_messages(page)).to_have_count(0)
    expect(sidebar(page)).not_to_contain_text("Temple House prices")
    assert cid not in [c.id for c in service.list_conversations(OWNER)]
    assert outside == [], f"requests left localhost: {outside}"


def test_feedback_is_recorded_and_shown_to_the_admin(ui_server, browser, answered) -> None:
    url, service, _docs = ui_server
    cid, message_id, answer = answered
    page, outside = open_ui(browser, f"{url}?conversation={cid}")
    expect(bot_messages(page)).to_have_count(1, timeout=15_000)
    # Gradio draws an answer's thumbs beside its message row, not inside it: the last pair is the last answer's.
    page.locator("#chatbot").get_by_role("button", name="Dislike").last.click()
    expect(page.locator("#feedback-status")).to_contain_text("recorded")
    records = [r for r in service.feedback("travel") if r.message_id == message_id]
    assert [r.rating for r in records] == ["down"]
    page.locator("#feedback-comment").locator("textarea, input").first.fill("The price is per person, not for two")
    page.locator("#send-feedback").click()
    expect(page.locator("#feedback-status")).to_contain_text("Comment saved")
    record = next(r for r in service.feedback("travel") if r.message_id == message_id)
    assert (record.rating, record.comment) == ("down", "The price is per person, not for two")
    assert record.question.startswith("How much does a hot pot dinner") and record.answer == answer.answer
    assert record.sources and record.sources[0]["source"] == answer.citations[0].source

    page.get_by_role("tab", name="Feedback").click()
    card = page.locator(f"#feedback-list .rag-feedback[data-message-id='{message_id}']")
    expect(card).to_contain_text("The price is per person, not for two")
    expect(card).to_contain_text("How much does a hot pot dinner")
    expect(card.locator(".rag-feedback-sources")).to_contain_text(answer.citations[0].source)
    assert card.get_attribute("data-rating") == "down"
    screenshot(page, "feedback")

    goto_ui(page)  # the thumb given comes back with the conversation
    expect(page.locator("#chatbot").get_by_role("button", name="Disliked")).to_have_count(1, timeout=15_000)
    assert outside == [], f"requests left localhost: {outside}"


def test_a_citation_opens_its_chunk_highlighted_in_its_document(ui_server, browser, answered) -> None:
    url, service, _docs = ui_server
    cid, _message_id, answer = answered
    citation = answer.citations[0]
    page, outside = open_ui(browser, f"{url}?conversation={cid}")
    expect(bot_messages(page)).to_have_count(1, timeout=15_000)
    source = last_answer(page).locator("details.rag-source").first
    source.locator("summary").click()
    with page.context.expect_page() as opened:
        source.locator("a.rag-open-chunk").click()
    detail = opened.value
    goto_ui(detail, detail.url)  # a fresh page of the UI, opened on the document tab
    expect(detail.get_by_role("tab", name="Document detail")).to_have_attribute("aria-selected", "true")
    highlighted = detail.locator("#doc-chunks .rag-chunk-highlight")
    expect(highlighted).to_have_count(1, timeout=15_000)
    assert highlighted.get_attribute("data-chunk-id") == str(citation.chunk_id)
    chunks = service.document_chunks("travel", citation.doc_id)
    # the whole document is there, in order, the cited chunk among them
    assert detail.locator("#doc-chunks .rag-chunk").count() == len(chunks)
    orders = [int(o) for o in detail.locator("#doc-chunks .rag-chunk").evaluate_all(
        "els => els.map(e => e.dataset.order)")]
    assert orders == sorted(orders)
    cited = next(c for c in chunks if c.id == citation.chunk_id)
    assert highlighted.locator(".rag-chunk-text").inner_text().strip() == cited.text.strip()
    expect(detail.locator("#doc-meta")).to_contain_text(citation.source)
    expect(detail.locator("#doc-meta")).to_contain_text(service.get_document("travel", citation.doc_id).origin)
    assert highlighted.is_visible()
    screenshot(detail, "document")
    assert outside == [], f"requests left localhost: {outside}"


def test_a_tag_filter_changes_the_answers_sources_and_several_kbs_answer(ui_server, browser) -> None:
    url, service, docs = ui_server
    folder = docs / "policies"
    folder.mkdir(exist_ok=True)
    for name, text in POLICY_DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    service.create_kb("policies")
    service.ingest("policies", [folder])
    by_source = {d.source: d.doc_id for d in service.list_documents("policies")}
    service.set_tags("policies", by_source["policy-2024.txt"], ["2024"])

    page, outside = open_ui(browser, url)
    choose(page, "kb-select", "policies")
    # the other document is tagged in the document detail view
    page.get_by_role("tab", name="Document detail").click()
    choose(page, "doc-detail-choice", "policy-2025.txt")
    expect(page.locator("#doc-meta")).to_contain_text("policy-2025.txt")  # shown (its tags box filled) first
    page.locator("#doc-tags").locator("input, textarea").first.fill("2025, policy")
    page.locator("#save-tags").click()
    expect(page.locator("#tags-result")).to_contain_text("Tags saved")
    assert service.get_document("policies", by_source["policy-2025.txt"]).tags == ("2025", "policy")

    page.get_by_role("tab", name="Chat").click()  # the filter's tag choices are read afresh
    question = "How many days of paid vacation does a full-time employee receive per year?"
    sources_seen = {}
    for tag in ("2024", "2025"):
        page.locator("#filter-tags input").click()
        page.get_by_role("option", name=tag, exact=True).click()
        page.keyboard.press("Escape")
        ask(page, question)
        summaries = last_answer(page).locator("details.rag-source summary").all_inner_texts()
        sources_seen[tag] = {s.split("] ", 1)[1].strip() for s in summaries}
        page.locator("#filter-tags [title='Clear']").click()  # for the next round
    assert sources_seen == {"2024": {"policy-2024.txt"}, "2025": {"policy-2025.txt"}}, sources_seen

    # another KB asked as well: a new conversation over both, a citation from "travel" linking there
    choose(page, "extra-kbs", "travel")
    expect(bot_messages(page)).to_have_count(0)
    ask(page, "How much does a double room at The Temple House cost per night?")
    answer = last_answer(page)
    assert "chengdu.md" in " ".join(answer.locator("details.rag-source summary").all_inner_texts())
    link = answer.locator("a.rag-open-chunk").first.get_attribute("href") or ""
    assert "kb=travel" in link, link
    expect(page).to_have_url(re.compile(r"conversation=[0-9a-f]{32}"))
    conversation, _ = service.get_conversation(conversation_in_url(page), OWNER)
    assert conversation.kbs == ["policies", "travel"]
    assert outside == [], f"requests left localhost: {outside}"

"""End-to-end tests of the web UI: a real server on localhost, headless Chromium, the bundled models."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

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
    answered: list[str] = []
    page.on("response", lambda r: answered.append(r.url) if "/gradio_api/run/predict" in r.url else None)
    page.goto(url)
    # The page's load event (browser language, fresh KB list) and then the document list: two calls.
    deadline = time.monotonic() + 30
    while len(answered) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(answered) >= 2, "the UI's load events did not run"
    return page, outside


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


@pytest.mark.xfail(strict=False, reason=(
    "the follow-up 'Until when can the unused ones be carried over?' was declined, with no sources, in one "
    "browser run since the relevance gate and support check of issue 13; issue 13 stays open"))
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
    choose(page, "delete-choice", "chengdu.md")
    page.locator("#delete-doc").click()
    page.locator("#delete-result").get_by_text("Deleted chengdu.md").wait_for()
    expect(table_cells(page, "documents-table", "chengdu.md")).to_have_count(0)
    expect(table_cells(page, "documents-table", "vacation.txt")).to_have_count(1)
    assert [d.source for d in service.list_documents("scratch")] == ["vacation.txt"]
    assert all(hit.source != "chengdu.md" for hit in service.search("scratch", "Chengdu hot pot restaurant"))
    assert outside == [], f"requests left localhost: {outside}"

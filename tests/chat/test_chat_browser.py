"""The web chat in Chromium (Playwright), at 1280 px and 390 px: live Markdown, safety against hostile output,
edit / regenerate / stop and retry, the conversation list, dark mode and keyboard shortcuts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from inference.simulator import Simulator
from tests.chat.browser import (
    BROWSER_MARKS,
    NARROW,
    VIEWPORTS,
    Site,
    no_errors,
    no_sideways_panning,
    send,
    site_fixture,
)
from tests.conftest import WebServer

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def site(web: WebServer, browser: Any, django_db_blocker: Any) -> Iterator[Site]:
    yield from site_fixture(web, browser, {"ann": ("alpha", "basic_user"), "ben": ("alpha", "basic_user"),
                                           "vic": ("alpha", "viewer")}, django_db_blocker)


@pytest.fixture
def paced(simulator: Simulator, clean: None) -> Iterator[Simulator]:
    """The simulator at a visible pace, so a test can look at an answer while it streams."""
    simulator.chunk_delay_s = 0.03
    yield simulator
    simulator.chunk_delay_s = 0


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_markdown_renders_live_and_the_same_after_reload(site: Site, paced: Simulator,
                                                         viewport: dict[str, int]) -> None:
    page = site.page("ann", viewport)
    page.goto(site.url("alpha", "/chat/"))
    options = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
    assert "claude-sonnet-5-5" in options and "claude-opus-5-5" not in options
    page.fill("#prompt", "Write a word counter in Rust please")
    page.click("#send")
    # While the answer streams, it is already Markdown: a heading, then a highlighted code block.
    page.locator(".message.assistant.streaming h2").wait_for()
    page.locator(".message.assistant.streaming pre code.hljs .hljs-keyword").first.wait_for()
    page.wait_for_function("() => !document.querySelector('.message.streaming')")
    answer = page.locator(".message.assistant").last
    answer.locator(".msg-actions").wait_for()
    assert answer.locator("h2").inner_text().startswith("Word counter")
    assert answer.locator("ol li").count() == 4
    assert answer.locator("pre code.language-rust").count() == 1
    assert answer.locator(".code-bar span").inner_text() == "rust"
    assert answer.locator(".table-wrap table th").all_inner_texts() == ["Approach", "Cost", "Best for"]
    assert answer.locator(".code-bar button.copy").count() == 1 and answer.locator(".msg-actions .copy").count() == 1
    assert re.search(r"/chat/[0-9a-f-]{36}/$", page.url)
    live = answer.locator(".body").inner_html()
    no_sideways_panning(page)

    page.reload()
    reloaded = page.locator(".message.assistant").last
    reloaded.locator(".msg-actions").wait_for()
    assert reloaded.locator(".body").inner_html() == live, "one pipeline: the same HTML live and after reload"
    if viewport == NARROW:
        assert page.locator("#sidebar").is_hidden() and page.locator("#drawer-open").is_visible()
        page.click("#drawer-open")
        page.locator("#sidebar.open #conversation-list li.active").wait_for()
        no_sideways_panning(page)
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_pasted_code_keeps_its_indentation_and_copy_buttons_copy(site: Site, clean: None,
                                                                 viewport: dict[str, int]) -> None:
    page = site.page("ann", viewport, permissions=["clipboard-read", "clipboard-write"])
    page.goto(site.url("alpha", "/chat/"))
    code = "def f(x):\n    if x:\n        return 1\n    return 0"
    answer = send(page, code)
    mine = page.locator(".message.user .body").last
    assert mine.inner_text() == code
    assert page.evaluate("() => getComputedStyle(document.querySelector('.message.user .body')).whiteSpace") \
        == "pre-wrap"
    answer.locator(".code-bar button.copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == answer.locator("pre code").text_content() and "        counts[item] = " in copied
    answer.locator(".msg-actions .copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("## ") and "```python\n" in copied, "a message is copied as its Markdown"
    page.reload()
    assert page.locator(".message.user .body").last.inner_text() == code
    no_sideways_panning(page)
    no_errors(page)


ATTACK = ('<img src=x onerror="window.__owned=1"> <script>window.__owned=2</script> '
          '[click](javascript:window.__owned=3) <a href="javascript:window.__owned=4">x</a> '
          '<iframe src="javascript:window.__owned=5"></iframe> ![t](https://example.invalid/t.png)')
# The simulator quotes at most 160 characters of the question: a second message carries the rest.
ATTACK_MORE = ('<svg onload=window.__owned=8></svg> [y](JaVaScRiPt:window.__owned=9) '
               '<details open ontoggle=window.__owned=10>d</details> [z](data:text/html,<b>x</b>) '
               '<style>body{display:none}</style>')


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_no_html_from_the_model_or_a_title_ever_runs(site: Site, clean: None, viewport: dict[str, int]) -> None:
    page = site.page("ann", viewport)
    page.goto(site.url("alpha", "/chat/"))
    answer = send(page, ATTACK)  # the simulator quotes the question in its answer
    send(page, ATTACK_MORE)

    def safe(page: Any = page) -> None:
        assert page.evaluate("() => window.__owned") is None
        for body in (".message.assistant .body", ".message.user .body"):
            hostile = ", ".join(f"{body} {tag}" for tag in ("img", "script", "iframe", "svg", "details", "style"))
            assert page.locator(hostile).count() == 0
        assert page.locator("a[href^='javascript' i], a[href^='data:' i]").count() == 0
        assert page.evaluate("() => getComputedStyle(document.body).display") != "none"
        texts = page.locator(".message.assistant .body").all_inner_texts()
        assert "onerror" in texts[0] and "ontoggle" in texts[1], "raw HTML is shown as text, not dropped"

    safe()
    # A hostile title (renamed in place) is text in the list, the heading and the tab title.
    if viewport == NARROW:
        page.click("#drawer-open")
    item = page.locator("#conversation-list li.active")
    item.locator("button.rename").click()
    page.fill("#conversation-list .rename-input", '<img src=x onerror="window.__owned=6">')
    page.keyboard.press("Enter")
    page.locator("#conversation-list li.active .open", has_text="<img").wait_for()
    page.reload()
    answer = page.locator(".message.assistant").last
    answer.locator(".msg-actions").wait_for()
    safe()
    assert page.locator("h1#conversation-title").inner_text() == '<img src=x onerror="window.__owned=6">'
    assert page.title().startswith('<img src=x onerror="window.__owned=6">')

    # The same conversation shared: the colleague's page goes through the same pipeline.
    page.click("#share")
    page.locator("#share-url").wait_for()
    shared_path = "/chat/shared/" + (page.get_attribute("#share-url", "href") or "").rstrip("/").rsplit("/", 1)[1] + "/"
    colleague = site.page("ben", viewport)
    colleague.goto(site.url("alpha", shared_path))
    colleague.locator(".message.assistant .body p").first.wait_for()
    safe(colleague)
    assert "onerror" in colleague.inner_text("h1")
    # The hostile title makes a harmless download name.
    with page.expect_download() as exported:
        page.click("#export-md")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.md", exported.value.suggested_filename)
    page.click("#share")
    page.locator("#share-link").wait_for(state="hidden")
    no_sideways_panning(page)
    no_errors(page)
    no_errors(colleague)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_edit_regenerate_versions_and_retry_after_stop(site: Site, simulator: Simulator, clean: None,
                                                       viewport: dict[str, int]) -> None:
    page = site.page("ann", viewport)
    page.goto(site.url("alpha", "/chat/"))
    first = send(page, "Tell me about apples")
    first_text = first.locator(".body").inner_text()

    # Regenerate: a second version; the first stays reachable.
    first.locator("button[data-action=regenerate]").click()
    first.locator(".version-label", has_text="2 / 2").wait_for()
    second_text = first.locator(".body").inner_text()
    assert second_text != first_text and "apples" in second_text
    # The page shows the choice at once and saves it with a request of its own: reload once that has answered.
    with page.expect_response(lambda r: r.url.endswith("/activate/") and r.request.method == "POST") as saved:
        first.locator("button[data-action=version-prev]").click()
    assert saved.value.ok
    first.locator(".version-label", has_text="1 / 2").wait_for()
    assert first.locator(".body").inner_text() == first_text
    page.reload()
    page.locator(".message.assistant .version-label", has_text="1 / 2").wait_for()  # the choice is kept

    # Edit the question: the new question and a new answer replace the old pair.
    page.locator(".message.user button[data-action=edit]").click()
    page.fill(".message.user .edit-box textarea", "Tell me about pears")
    page.click(".message.user .edit-box button[data-action=edit-save]")
    page.locator(".message.assistant .body", has_text="pears").wait_for()
    page.locator("#send:not([disabled])").wait_for()
    assert page.locator(".message.user").count() == 1 and page.locator(".message.assistant").count() == 1
    page.reload()
    assert page.locator(".message.user .body").inner_text() == "Tell me about pears"

    # Stop a slow answer with Esc, then Retry: the stopped question is the one answered.
    simulator.chunk_delay_s = 0.25
    try:
        page.fill("#prompt", "Now about plums")
        page.click("#send")
        page.locator(".message.assistant.streaming").wait_for()
        page.locator("#stop").wait_for()
        page.locator(".message.assistant.streaming .body", has_text="plums").wait_for()  # the answer has begun
        page.keyboard.press("Escape")
        page.locator("#chat-error", has_text="Stopped").wait_for()
    finally:
        simulator.chunk_delay_s = 0
    page.locator("#send:not([disabled])").wait_for()
    # The stopped question was saved when the answer began: it stays on the page (not handed back to the box).
    assert page.locator(".message.user", has_text="Now about plums").count() == 1
    assert page.input_value("#prompt") == ""
    page.click("#retry")
    last = page.locator(".message.assistant").last
    last.locator(".body", has_text="You asked: Now about plums").wait_for()
    page.locator("#send:not([disabled])").wait_for()
    assert "pears" not in last.locator(".body").inner_text()
    page.errors[:] = [e for e in page.errors if "ERR_ABORTED" not in e and "aborted" not in e.lower()]
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_list_search_groups_pin_rename_and_delete_in_place(site: Site, clean: None, viewport: dict[str, int],
                                                           django_db_blocker: Any) -> None:
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from inference.models import Conversation

    page = site.page("ben", viewport)
    page.goto(site.url("alpha", "/chat/"))
    send(page, f"Kiwi orchard planning {viewport['width']}")
    # Offered at once, without a reload: the new conversation with its actions, under Today.
    item = page.locator("#conversation-list li.active")
    assert (item.locator(".open").text_content() or "").startswith("Kiwi orchard planning")
    assert page.inner_text("#conversation-title").startswith("Kiwi orchard planning")
    assert item.locator("button.rename").count() == 1 and item.locator("button.delete").count() == 1
    assert page.locator("#conversation-list h2.group").first.text_content() == "Today"
    with django_db_blocker.unblock(), schema_context("alpha"):
        user_id = site.people["ben"].pk
        for title, days in (("Older one", 40), ("Last week one", 4), ("Yesterday one", 1)):
            conversation = Conversation.objects.create(user_id=user_id, model="claude-sonnet-5-5", title=title)
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now() - timedelta(days=days))
    page.reload()
    if viewport == NARROW:
        page.click("#drawer-open")
    groups = [g.strip() for g in page.locator("#conversation-list h2.group").all_text_contents()]
    assert groups[:4] == ["Today", "Yesterday", "Previous 7 days", "Older"]

    # Search finds words of the messages, not only titles.
    page.fill("#search", "orchard")
    page.wait_for_function("() => document.querySelectorAll('#conversation-list li.conversation').length === 1")
    page.fill("#search", "no such words anywhere")
    page.locator("#list-empty").wait_for()
    page.fill("#search", "")
    page.wait_for_function("() => document.querySelectorAll('#conversation-list li.conversation').length >= 4")

    # Pin, rename and delete in place: no prompt() or confirm() (a dialog fails the test).
    older = page.locator("#conversation-list li.conversation", has_text="Older one")
    older.hover()
    older.locator("button.pin").click()
    page.locator("#conversation-list h2.group").first.filter(has_text="Pinned").wait_for()
    pinned = page.locator("#conversation-list li.conversation").first
    assert pinned.locator(".open").inner_text() == "Older one"
    pinned.locator("button.rename").click()
    page.fill("#conversation-list .rename-input", "Renamed in place")
    page.keyboard.press("Enter")
    page.locator("#conversation-list li.conversation .open", has_text="Renamed in place").wait_for()
    target = page.locator("#conversation-list li.conversation", has_text="Yesterday one")
    target.hover()
    target.locator("button.delete").click()
    target.locator("button[data-action=cancel-delete]").click()
    assert target.count() == 1
    target.hover()
    target.locator("button.delete").click()
    target.locator("button[data-action=confirm-delete]").click()
    page.locator("#conversation-list li.conversation", has_text="Yesterday one").wait_for(state="detached")
    with django_db_blocker.unblock(), schema_context("alpha"):
        assert not Conversation.objects.filter(user_id=user_id, title="Yesterday one").exists()
        assert Conversation.objects.get(user_id=user_id, title="Renamed in place").pinned
        Conversation.objects.filter(user_id=user_id).delete()
    no_sideways_panning(page)
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_list_refresh_never_throws_away_a_rename_or_a_deletion_being_confirmed(
        site: Site, clean: None, viewport: dict[str, int], django_db_blocker: Any) -> None:
    """The list is refreshed after every answer and every search; one that lands while the user is renaming (or
    confirming a deletion) in the list waits until they are done, then shows what changed meanwhile."""
    from django_tenants.utils import schema_context

    from inference.models import Conversation

    page = site.page("ben", viewport)
    page.goto(site.url("alpha", "/chat/"))
    send(page, f"Plum harvest notes {viewport['width']}")
    if viewport == NARROW:
        page.click("#drawer-open")
    item = page.locator("#conversation-list li.active")
    item.locator("button.rename").click()
    page.fill("#conversation-list .rename-input", "Half typed")
    with django_db_blocker.unblock(), schema_context("alpha"):
        Conversation.objects.create(user_id=site.people["ben"].pk, model="claude-sonnet-5-5", title="Made meanwhile")

    def refresh_lands() -> None:  # what a search does (the rename input keeps the focus), then its answer, if any
        page.evaluate("() => document.getElementById('search-form').requestSubmit()")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(200)

    refresh_lands()
    field = page.locator("#conversation-list .rename-input")
    assert field.count() == 1 and field.input_value() == "Half typed"
    assert page.locator("#conversation-list li.conversation", has_text="Made meanwhile").count() == 0
    field.fill("Plums, renamed")
    page.keyboard.press("Enter")
    page.locator("#conversation-list li.conversation .open", has_text="Plums, renamed").wait_for()
    page.locator("#conversation-list li.conversation", has_text="Made meanwhile").wait_for()

    target = page.locator("#conversation-list li.conversation", has_text="Made meanwhile")
    target.hover()
    target.locator("button.delete").click()
    with django_db_blocker.unblock(), schema_context("alpha"):
        Conversation.objects.create(user_id=site.people["ben"].pk, model="claude-sonnet-5-5", title="Second one")
    refresh_lands()
    assert target.locator("button[data-action=confirm-delete]").count() == 1
    target.locator("button[data-action=cancel-delete]").click()
    page.locator("#conversation-list li.conversation", has_text="Second one").wait_for()
    with django_db_blocker.unblock(), schema_context("alpha"):
        Conversation.objects.filter(user_id=site.people["ben"].pk).delete()
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_dark_mode_follows_the_system_setting(site: Site, viewport: dict[str, int]) -> None:
    colours = {}
    for scheme in ("light", "dark"):
        page = site.page("ann", viewport, color_scheme=scheme)
        page.goto(site.url("alpha", "/chat/"))
        colours[scheme] = page.evaluate("""() => {
            const rgb = (c) => c.match(/\\d+/g).slice(0, 3).map(Number);
            const lum = (c) => rgb(c).reduce((a, b) => a + b, 0) / 3;
            return [lum(getComputedStyle(document.body).backgroundColor),
                    lum(getComputedStyle(document.body).color),
                    lum(getComputedStyle(document.querySelector('#prompt')).backgroundColor)]; }""")
        no_sideways_panning(page)
        no_errors(page)
    assert colours["light"][0] > 200 and colours["light"][1] < 60
    assert colours["dark"][0] < 60 and colours["dark"][1] > 200
    assert colours["light"][2] > 200 and colours["dark"][2] < 60, "the message box follows the scheme too"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_keyboard_shortcuts(site: Site, clean: None, viewport: dict[str, int]) -> None:
    page = site.page("ann", viewport, permissions=["clipboard-read", "clipboard-write"])
    page.goto(site.url("alpha", "/chat/"))
    answer = send(page, "Shortcut test about figs")
    page.locator("#search").focus()
    page.keyboard.press("Shift+Escape")
    assert page.evaluate("document.activeElement.id") == "prompt"
    page.keyboard.press("Control+Shift+C")
    page.wait_for_function("async () => (await navigator.clipboard.readText()).includes('figs')")
    assert page.evaluate("navigator.clipboard.readText()") == page.evaluate(
        "() => [...document.querySelectorAll('.message.assistant')].pop().atriumText")
    assert answer.locator(".msg-actions .copy").inner_text() in ("Copied", "Copy")
    page.keyboard.press("Control+k")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(re.compile(r".*/chat/$"))
    assert page.locator(".message").count() == 0
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_role_without_write_reads_but_cannot_send(site: Site, viewport: dict[str, int]) -> None:
    page = site.page("vic", viewport)
    page.goto(site.url("alpha", "/chat/"))
    assert "missing permission access.write" in page.inner_text(".thread")
    assert page.locator("#composer").count() == 0
    no_sideways_panning(page)
    no_errors(page)

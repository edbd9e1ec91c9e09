"""The web chat in Chromium, second part: attachments (vision roles only), export and sharing within a tenant,
API keys, usage that matches enforcement, accessibility (axe-core) and the screenshots of docs/getting-started.md."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chat.browser import (
    BROWSER_MARKS,
    NARROW,
    VIEWPORTS,
    WIDE,
    Site,
    axe_violations,
    no_errors,
    no_sideways_panning,
    send,
    site_fixture,
)
from tests.conftest import WebServer

pytestmark = BROWSER_MARKS

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc00000030101009a2b6d4f0000000049454e44ae426082")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> " \
      b"endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HOSTILE_NAME = "<img src=x onerror=window.__owned=7>.png"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def site(web: WebServer, browser: Any, django_db_blocker: Any) -> Iterator[Site]:
    yield from site_fixture(web, browser, {
        "pat": ("alpha", "power_user"), "bob": ("alpha", "basic_user"), "col": ("alpha", "basic_user"),
        "cora": ("alpha", "compliance_officer"), "eve": ("beta", "power_user"), "gina": ("gamma", "basic_user"),
        "gwen": ("gamma", "basic_user"),
    }, django_db_blocker)


def _csrf(page: Any) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_attach_an_image_and_a_pdf_with_vision(site: Site, clean: None, viewport: dict[str, int],
                                               django_db_blocker: Any) -> None:
    from django.conf import settings
    from django_tenants.utils import schema_context

    from inference.models import Attachment, Conversation

    page = site.page("pat", viewport)
    page.goto(site.url("alpha", "/chat/"))
    page.set_input_files("#attach", [{"name": HOSTILE_NAME, "mimeType": "image/png", "buffer": PNG},
                                     {"name": "report.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    page.locator("#pending li", has_text="report.pdf").wait_for()
    assert page.locator("#pending li").count() == 2
    answer = send(page, "What is in these files?")
    assert "What is in these files?" in answer.inner_text()
    names = page.locator(".message.user .attachments a").all_inner_texts()
    assert names == [HOSTILE_NAME, "report.pdf"]  # a hostile file name is text
    assert page.evaluate("() => window.__owned") is None
    conversation_id = page.url.rstrip("/").rsplit("/", 1)[1]
    with django_db_blocker.unblock(), schema_context("alpha"):
        conversation = Conversation.objects.get(pk=conversation_id)
        files = list(Attachment.objects.filter(conversation=conversation).order_by("created_at"))
        assert [a.content_type for a in files] == ["image/png", "application/pdf"]
        assert all(a.message_id is not None for a in files)
        paths = [Path(settings.MEDIA_ROOT) / a.file.name for a in files]
        assert all(a.file.name.startswith(f"alpha/attachments/{conversation_id}/") for a in files)
        assert all(p.exists() for p in paths)
        blocks = conversation.messages.get(role="user").content
        assert [b["type"] for b in blocks] == ["image", "document", "text"]
    # The image is served to its owner as an image, the PDF as a download, both never as a page.
    image = page.request.get(site.url("alpha", f"/chat/attachments/{files[0].id}/"))
    assert image.status == 200 and image.headers["content-type"] == "image/png" and image.body() == PNG
    assert "sandbox" in image.headers["content-security-policy"]
    page.reload()
    assert page.locator(".message.user .attachments a").all_inner_texts() == [HOSTILE_NAME, "report.pdf"]

    # Deleting the conversation deletes the files.
    if viewport == NARROW:
        page.click("#drawer-open")
    item = page.locator("#conversation-list li.active")
    item.locator("button.delete").click()
    item.locator("button[data-action=confirm-delete]").click()
    page.wait_for_url(re.compile(r".*/chat/$"))
    assert not any(p.exists() for p in paths)
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_role_without_vision_cannot_attach(site: Site, clean: None, viewport: dict[str, int]) -> None:
    page = site.page("bob", viewport)
    page.goto(site.url("alpha", "/chat/"))
    assert page.locator("#attach").count() == 0
    assert "access.use_vision" in page.inner_text("#composer .hint")
    created = page.request.post(site.url("alpha", "/api/conversations/"), data=json.dumps(
        {"model": "claude-sonnet-5-5"}), headers={"Content-Type": "application/json", "X-CSRFToken": _csrf(page)})
    cid = created.json()["id"]
    refused = page.request.post(site.url("alpha", f"/api/conversations/{cid}/attachments/"),
                                multipart={"file": {"name": "x.png", "mimeType": "image/png", "buffer": PNG}},
                                headers={"X-CSRFToken": _csrf(page)})
    assert refused.status == 403 and "access.use_vision" in refused.json()["error"]["message"]
    page.request.delete(site.url("alpha", f"/api/conversations/{cid}/"), headers={"X-CSRFToken": _csrf(page)})
    no_sideways_panning(page)
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_export_markdown_and_json(site: Site, clean: None, viewport: dict[str, int]) -> None:
    page = site.page("bob", viewport)
    page.goto(site.url("alpha", "/chat/"))
    send(page, "Export me: a table of pears")
    page.locator("#thread-tools").wait_for()
    no_sideways_panning(page)
    with page.expect_download() as markdown:
        page.click("#export-md")
    text = Path(markdown.value.path()).read_text()
    assert markdown.value.suggested_filename == "Export-me-a-table-of-pears.md"
    assert text.startswith("# Export me: a table of pears") and "## You" in text and "| Approach |" in text
    with page.expect_download() as exported:
        page.click("#export-json")
    data = json.loads(Path(exported.value.path()).read_text())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][0]["content"][0]["text"] == "Export me: a table of pears"
    # Another user cannot export it.
    other = site.page("col", viewport)
    refused = other.request.get(site.url("alpha", f"/api/conversations/{data['id']}/export/?as=md"))
    assert refused.status == 404
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_share_read_only_with_colleagues_of_the_same_tenant(site: Site, clean: None,
                                                            viewport: dict[str, int]) -> None:
    page = site.page("bob", viewport)
    page.goto(site.url("alpha", "/chat/"))
    send(page, "Shared plan for the orchard")
    page.click("#share")
    link = page.locator("#share-url")
    link.wait_for()
    url = link.get_attribute("href") or ""
    assert re.search(r"/chat/shared/[0-9a-f-]{36}/$", url)
    path = "/chat/shared/" + url.rstrip("/").rsplit("/", 1)[1] + "/"

    colleague = site.page("col", viewport)
    colleague.goto(site.url("alpha", path))
    assert colleague.locator("#shared-by").inner_text().startswith(f"Shared read-only by {site.people['bob'].username}")
    colleague.locator(".message.assistant h2").wait_for()  # rendered by the same pipeline
    assert colleague.locator("#composer, #prompt, button[data-action=edit]").count() == 0
    no_sideways_panning(colleague)

    anonymous = site.page(None, viewport)
    anonymous.goto(site.url("alpha", path))
    assert "/accounts/login/" in anonymous.url
    outsider = site.page("eve", viewport)  # signed in to beta: the link names a conversation of alpha
    response = outsider.goto(site.url("beta", path))
    assert response.status == 404 and "not available" in outsider.inner_text("h1")
    outsider.goto(site.url("alpha", path))
    assert "/accounts/login/" in outsider.url, "a beta session is no session on alpha"

    page.click("#share")  # stop sharing: the link stops working
    page.locator("#share-link").wait_for(state="hidden")
    assert colleague.goto(site.url("alpha", path)).status == 404
    outsider.errors.clear()
    colleague.errors.clear()
    no_errors(page)


HOSTILE_PRESET = '<img src=x onerror="window.__owned=11">'


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_system_prompt_per_conversation_and_saved_presets(site: Site, clean: None, simulator: Any,
                                                          viewport: dict[str, int], django_db_blocker: Any) -> None:
    from django_tenants.utils import schema_context

    from inference.models import ChatPreference, Conversation

    pirate = f"Answer as a pirate would ({viewport['width']})."
    page = site.page("col", viewport)
    page.goto(site.url("alpha", "/chat/"))
    page.click("#system-panel summary")
    page.fill("#system", pirate)
    # Saved as a preset under a hostile name: the name is text everywhere.
    page.fill("#preset-name", HOSTILE_PRESET)
    page.click("#preset-save")
    page.locator("#system-status", has_text="saved").wait_for()
    page.fill("#preset-name", f"Pirate {viewport['width']}")
    page.click("#preset-save")
    page.locator("#system-status", has_text=f"Pirate {viewport['width']}").wait_for()
    no_sideways_panning(page)

    # The first message creates the conversation with that system prompt, and the model receives it.
    simulator.reset_requests()
    send(page, "Where is the treasure?")
    cid = page.url.rstrip("/").rsplit("/", 1)[1]
    assert any(pirate in str(r.get("system")) for r in simulator.requests())
    with django_db_blocker.unblock(), schema_context("alpha"):
        assert Conversation.objects.get(pk=cid).system == pirate

    # Changed for this conversation only; the next call carries the new one.
    page.fill("#system", "Answer in one sentence.")
    page.click("#system-save")
    page.locator("#system-status", has_text="System prompt saved for this chat.").wait_for()
    simulator.reset_requests()
    send(page, "And the map?")
    systems = [str(r.get("system")) for r in simulator.requests()]
    assert any("Answer in one sentence." in x for x in systems) and not any(pirate in x for x in systems)
    page.reload()
    assert page.locator("#system-panel summary").inner_text() == "System prompt (set)"
    assert page.input_value("#system") == "Answer in one sentence."

    # A new chat starts from a saved preset.
    page.goto(site.url("alpha", "/chat/"))
    page.click("#system-panel summary")
    names = page.eval_on_selector_all("#preset option", "els => els.map(e => e.textContent)")
    assert HOSTILE_PRESET in names and f"Pirate {viewport['width']}" in names
    page.select_option("#preset", label=f"Pirate {viewport['width']}")
    assert page.input_value("#system") == pirate
    assert page.evaluate("() => window.__owned") is None and page.locator("#system-panel img").count() == 0
    # Deleted presets are gone after a reload too.
    page.select_option("#preset", label=HOSTILE_PRESET)
    page.click("#preset-delete")
    page.locator("#system-status", has_text="deleted").wait_for()
    page.reload()
    page.click("#system-panel summary")
    names = page.eval_on_selector_all("#preset option", "els => els.map(e => e.textContent)")
    assert HOSTILE_PRESET not in names and f"Pirate {viewport['width']}" in names
    with django_db_blocker.unblock(), schema_context("alpha"):
        saved = ChatPreference.objects.get(user_id=site.people["col"].pk).settings["presets"]
        assert {"name": f"Pirate {viewport['width']}", "system": pirate} in saved
        Conversation.objects.filter(pk=cid).delete()
    no_sideways_panning(page)
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_api_key_page_post_redirect_get_and_copy(site: Site, django_db_blocker: Any,
                                                 viewport: dict[str, int]) -> None:
    from django_tenants.utils import schema_context

    from access.models import ApiKey

    with django_db_blocker.unblock(), schema_context("alpha"):
        before = ApiKey.objects.filter(user_id=site.people["col"].pk).count()
    page = site.page("col", viewport, permissions=["clipboard-read", "clipboard-write"])
    page.goto(site.url("alpha", "/account/keys/"))
    page.fill("#id_name", f"laptop script {viewport['width']}")
    page.click("button:has-text('Create key')")
    page.wait_for_url(re.compile(r".*/account/keys/$"))
    raw = page.inner_text("#new-key-value")
    assert raw.startswith("atr_")
    page.click("#copy-new-key")
    assert page.evaluate("navigator.clipboard.readText()") == raw
    page.reload()  # no "resubmit the form?" and no second key
    assert page.locator("#new-key").count() == 0
    with django_db_blocker.unblock(), schema_context("alpha"):
        assert ApiKey.objects.filter(user_id=site.people["col"].pk).count() == before + 1
    no_sideways_panning(page)
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_usage_matches_enforcement_and_refusals_read_well(site: Site, clean: None, quota_policy: Any,
                                                          viewport: dict[str, int]) -> None:
    quota_policy(user_tokens_per_day=5000)
    who = "gina" if viewport == WIDE else "gwen"  # a first request of the day for each
    page = site.page(who, viewport)
    page.goto(site.url("gamma", "/chat/"))
    send(page, "Count my tokens")
    if viewport == NARROW:  # the usage line lives in the drawer at 390 px
        page.click("#drawer-open")
    page.wait_for_function("() => document.getElementById('usage-requests').textContent.trim() === '1'")
    shown = int(page.inner_text("#usage-tokens"))
    usage = page.request.get(site.url("gamma", "/api/usage/me/")).json()
    from access.quotas import quota_tokens_used_today
    from tenants.models import Tenant

    gamma = Tenant.objects.get(schema_name="gamma")

    class _User:
        pk = site.people[who].pk

    assert shown == usage["tokens_used"] == quota_tokens_used_today(tenant=gamma, user=_User())
    assert page.inner_text("#usage-limit") == "5000"
    if viewport == NARROW:
        page.keyboard.press("Escape")

    quota_policy(user_tokens_per_day=shown + 10)  # the next request's reservation no longer fits
    page.fill("#prompt", "One more")
    page.click("#send")
    error = page.locator("#chat-error")
    error.wait_for(state="visible")
    assert "resets at 00:00 UTC" in error.inner_text() and not re.search(r"\d{4,} s", error.inner_text())
    quota_policy(user_tokens_per_day=None, user_requests_per_minute=0)
    page.click("#send")
    page.locator("#chat-error", has_text="Try again in").wait_for()
    assert re.search(r"Try again in (\d{1,2} s|1 min)\.", error.inner_text())
    page.errors.clear()  # the refusals' 429 responses are logged by the browser


PAGES = [("bob", "/chat/"), ("bob", "/account/keys/"), ("bob", "/account/data/"), ("cora", "/compliance/")]


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation(site: Site, clean: None, viewport: dict[str, int], scheme: str) -> None:
    chat = site.page("bob", viewport, color_scheme=scheme)
    chat.goto(site.url("alpha", "/chat/"))
    send(chat, "Accessibility check: a table and some Python")
    found = {"/chat/<id>/": axe_violations(chat)}
    for who, path in PAGES:
        page = site.page(who, viewport, color_scheme=scheme)
        page.goto(site.url("alpha", path))
        found[path] = axe_violations(page)
        no_sideways_panning(page)
        no_errors(page)
    assert not any(found.values()), json.dumps(found, indent=1)


def test_screenshots_for_the_docs(site: Site, clean: None, tmp_path: Path) -> None:
    """The pictures in docs/getting-started.md; written there with ATRIUM_SCREENSHOTS=1, else to a temp dir."""
    target = DOCS_IMAGES if os.environ.get("ATRIUM_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    tall = {"width": 1280, "height": 1420}  # the whole answer in view (a full-page shot breaks the sticky composer)
    for scheme, viewport, name in (("light", tall, "chat-light.png"), ("dark", tall, "chat-dark.png"),
                                   ("light", NARROW, "chat-390.png")):
        page = site.page("pat", viewport, color_scheme=scheme)
        page.goto(site.url("alpha", "/chat/"))
        page.click("#system-panel summary")
        page.fill("#system", "Answer like a senior engineer: short, with code.")
        send(page, "How do I count words in a file with Python?")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(target / name))
        if viewport == NARROW:
            page.click("#drawer-open")
            page.locator("#sidebar.open").wait_for()
            page.wait_for_timeout(300)  # the drawer's slide-in animation
            page.screenshot(path=str(target / "chat-390-list.png"))
    for viewport, suffix in ((WIDE, ""), (NARROW, "-390")):
        keys = site.page("pat", viewport)
        keys.goto(site.url("alpha", "/account/keys/"))
        keys.fill("#id_name", "notebook")
        keys.click("button:has-text('Create key')")
        keys.locator("#new-key").wait_for()
        keys.screenshot(path=str(target / f"api-keys{suffix}.png"))
        data = site.page("pat", viewport)
        data.goto(site.url("alpha", "/account/data/"))
        data.screenshot(path=str(target / f"my-data{suffix}.png"))
    shots = sorted(p.name for p in target.glob("*.png"))
    assert {"chat-light.png", "chat-dark.png", "chat-390.png", "chat-390-list.png", "api-keys.png",
            "api-keys-390.png", "my-data.png", "my-data-390.png"} <= set(shots)
    assert all((target / s).stat().st_size > 10_000 for s in shots)

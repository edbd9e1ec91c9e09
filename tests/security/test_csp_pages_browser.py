"""Issue 14, headers: the Content-Security-Policy has no 'unsafe-inline', so a style="" attribute or an inline
<script>/<style> without the nonce is refused by the browser. Chromium visits the pages outside the chat and the
console (sign-in, consent, a refusal, a failed SSO sign-in, the second-factor pages, the admin index) and reports no
CSP violation (`securitypolicyviolation` events, recorded by a script Playwright adds before the page's own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chat.browser import PASSWORD, Person, people_delete, people_make
from tests.conftest import WebServer

pytestmark = pytest.mark.e2e
RECORDER = """document.addEventListener('securitypolicyviolation', e => (window.__csp = window.__csp || [])
    .push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));"""


@pytest.fixture(scope="module")
def people(web: WebServer, django_db_blocker: Any) -> Iterator[dict[str, Person]]:
    with django_db_blocker.unblock():
        made = people_make({"member": ("alpha", "basic_user"), "admin": ("alpha", "admin")})
        from django.contrib.auth import get_user_model
        from django_tenants.utils import schema_context

        with schema_context("alpha"):
            get_user_model().objects.filter(pk=made["admin"].pk).update(is_staff=True)
    yield made
    with django_db_blocker.unblock():
        people_delete(made)


def _violations(page: Any) -> list[str]:
    return list(page.evaluate("() => window.__csp || []"))


def test_pages_outside_the_chat_raise_no_csp_violation(browser: Any, web: WebServer,
                                                       people: dict[str, Person]) -> None:
    alpha = web.url("alpha.localhost")
    context = browser.new_context()
    context.add_init_script(RECORDER)
    page = context.new_page()
    page.set_default_timeout(20_000)
    seen: dict[str, list[str]] = {}

    def visit(path: str, expect: str) -> None:
        page.goto(f"{alpha}{path}")
        page.locator(expect).first.wait_for()
        page.wait_for_load_state("load")
        seen[path] = _violations(page)

    visit("/accounts/login/", "#sign-in")
    visit("/oidc/callback/?state=forged&code=x", "#sso-error")  # sso_failed.html
    page.goto(f"{alpha}/accounts/login/?next=/consent/")
    page.fill("#id_username", people["member"].username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{alpha}/consent/")
    seen["/consent/"] = _violations(page)
    visit(f"/compliance/exports/{uuid.uuid4()}/download/", "#refusal")  # refused.html
    visit("/account/data/", "main")

    # An administrator with the second factor enforced would see the setup page; the admin index is Django's own
    # (templates/admin/index.html), not django-tenants' copy with inline styles.
    context.clear_cookies()
    page.goto(f"{alpha}/accounts/login/?next=/admin/")
    page.fill("#id_username", people["admin"].username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{alpha}/admin/")
    # The tenant's admin workspace opens on its overview (issue 17).
    assert page.title().startswith("Overview") and page.locator("#content-main").count() > 0
    seen["/admin/"] = _violations(page)
    visit("/account/mfa/setup/", "#mfa-setup")
    assert {path: found for path, found in seen.items() if found} == {}
    assert len(seen) == 7
    context.close()

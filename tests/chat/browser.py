"""Helpers of the web chat's browser tests: signed-in pages at a given width, checks every page must pass."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WebServer

# Every browser test module's marks: end-to-end, slow, and skipped where Debian's chromium is missing.
BROWSER_MARKS = [pytest.mark.e2e, pytest.mark.slow,
                 pytest.mark.skipif(shutil.which("chromium") is None and not os.path.exists("/usr/bin/chromium"),
                                    reason="Debian's chromium is not installed (make test-deps installs it)")]

PASSWORD = "pw-Browser-123"
WIDE = {"width": 1280, "height": 860}
NARROW = {"width": 390, "height": 844}
VIEWPORTS = [pytest.param(WIDE, id="1280px"), pytest.param(NARROW, id="390px")]
AXE = Path(__file__).resolve().parents[1] / "node" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


@dataclass
class Person:
    schema: str
    username: str
    role: str
    pk: int
    state: dict[str, Any] | None = None  # the signed-in browser storage (cookies), made once per module


@dataclass
class Site:
    """The server, the browser and the people of one test module."""

    web: WebServer
    browser: Any
    people: dict[str, Person]
    opened: list[Any] = field(default_factory=list)

    def url(self, schema: str, path: str) -> str:
        return self.web.url(f"{schema}.localhost") + path

    def page(self, who: str | None, viewport: dict[str, int] = WIDE, **options: Any) -> Any:
        """A new page, signed in as `who` (None: anonymous), failing the test on any dialog or console error."""
        person = self.people[who] if who else None
        if person is not None and person.state is None:
            person.state = self._sign_in(person)
        context = self.browser.new_context(viewport=viewport, storage_state=person.state if person else None,
                                           **options)
        self.opened.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.errors = []  # type: ignore[attr-defined]
        page.on("dialog", lambda d: page.errors.append(f"dialog: {d.message}") or d.dismiss())
        page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"))
        return page

    def _sign_in(self, person: Person) -> dict[str, Any]:
        context = self.browser.new_context()
        page = context.new_page()
        page.goto(self.url(person.schema, "/accounts/login/?next=/chat/"))
        page.fill("#id_username", person.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/chat/$"))
        state: dict[str, Any] = context.storage_state()
        context.close()
        return state

    def close(self) -> None:
        for context in self.opened:
            context.close()
        self.opened.clear()


def people_make(spec: dict[str, tuple[str, str]]) -> dict[str, Person]:
    """Committed users (name -> (schema, role)) with PASSWORD and consent given, for a server process to see."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    from audit.services import consent_give, notice_current
    from tenants.models import Tenant

    made = {}
    for name, (schema, role) in spec.items():
        with schema_context(schema):
            username = f"{name}-{uuid.uuid4().hex[:6]}"
            user = get_user_model().objects.create_user(username=username, email=f"{username}@example.com",
                                                        password=PASSWORD)
            user.groups.add(Group.objects.get(name=role))
            notice = notice_current(Tenant.objects.get(schema_name=schema))
            if notice is not None:
                consent_give(user, notice)
            made[name] = Person(schema=schema, username=username, role=role, pk=int(user.pk))
    return made


def people_delete(people: dict[str, Person]) -> None:
    import time

    from django.contrib.auth import get_user_model
    from django.db import IntegrityError
    from django_tenants.utils import schema_context

    for person in people.values():
        with schema_context(person.schema):
            for attempt in range(50):  # the server's background writer may still be recording the last calls
                try:
                    get_user_model().objects.filter(pk=person.pk).delete()
                    break
                except IntegrityError:
                    if attempt == 49:
                        raise
                    time.sleep(0.1)


def site_fixture(web: WebServer, browser: Any, spec: dict[str, tuple[str, str]],
                 django_db_blocker: Any) -> Iterator[Site]:
    with django_db_blocker.unblock():
        people = people_make(spec)
    site = Site(web=web, browser=browser, people=people)
    try:
        yield site
    finally:
        site.close()
        with django_db_blocker.unblock():
            people_delete(people)


def no_sideways_panning(page: Any) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page is {width[0]} px wide in a {width[1]} px window"


def no_errors(page: Any) -> None:
    assert not page.errors, page.errors


def send(page: Any, text: str) -> Any:
    """Type a question, send it, wait for the saved answer; the answer's article."""
    before = page.locator(".message.assistant").count()
    page.fill("#prompt", text)
    page.click("#send")
    answer = page.locator(".message.assistant").nth(before)
    answer.locator(".msg-actions").wait_for()
    page.wait_for_function("() => !document.querySelector('.message.streaming')")
    page.locator("#send:not([disabled])").wait_for()
    return answer


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page as it is now."""
    page.evaluate(AXE.read_text())  # evaluated, not injected as a <script>: the page's CSP may forbid inline
    result = page.evaluate("""async () => {
        const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
        const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact,
                        nodes: v.nodes.map(n => n.target.join(' ') + ' ' + n.failureSummary)}));
    }""")
    return list(json.loads(json.dumps(result)))

"""Helpers of the admin screens' browser tests (test_admin_workspace_browser.py, test_admin_sso_platform_browser.py):
committed people, pages that record console errors and CSP violations, the admin sign-in, the server's mail outbox."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

from tests.access.conftest import MAIL_DIR

PASSWORD = "pw-Workspace-123"
WIDE = {"width": 1280, "height": 900}
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


class People:
    """Committed users of this test, deleted at its end."""

    def __init__(self, blocker: Any) -> None:
        self.blocker = blocker
        self.made: list[tuple[str, int]] = []

    def make(self, schema: str, role: str | None, *, staff: bool = False) -> Any:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django_tenants.utils import schema_context

        with self.blocker.unblock(), schema_context(schema):
            name = f"{role or 'member'}-{uuid.uuid4().hex[:6]}"
            user = get_user_model().objects.create_user(username=name, email=f"{name}@a.example",
                                                        password=PASSWORD, is_staff=staff)
            if role:
                user.groups.add(Group.objects.get(name=role))
        self.made.append((schema, int(user.pk)))
        return user

    def cleanup(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django_tenants.utils import schema_context

        with self.blocker.unblock():
            for schema, pk in self.made:
                with schema_context(schema):
                    get_user_model().objects.filter(pk=pk).delete()
            connection.set_schema_to_public()


def admin_page(browser: Any, viewport: dict[str, int] = WIDE) -> Any:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(20_000)
    watch(page)
    return page


def watch(page: Any) -> None:
    page.errors = []
    # Only Atrium's pages count: the test IdP's own pages load web fonts that this sandbox cannot reach.
    page.on("pageerror", lambda e: ".localhost:" in page.url and page.errors.append(f"page error: {e}"))
    # A refused inline script or style (CSP without 'unsafe-inline') is reported as a console error.
    page.on("console", lambda m: m.type == "error" and "status of 4" not in m.text and ".localhost:" in page.url
            and page.errors.append(f"{page.url}: {m.text[:150]} at {m.location}"))


def admin_login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def mail_to(address: str, after: float) -> list[str]:
    """Bodies of the messages written to the server's file outbox for `address` since `after`."""
    found = []
    for path in sorted(MAIL_DIR.glob("*.log"), key=lambda p: p.stat().st_mtime):
        if path.stat().st_mtime >= after - 1:
            text = path.read_text()
            for message in text.split("-" * 79):
                if f"To: {address}" in message:
                    found.append(message)
    return found


def invitation_link(message: str) -> str:
    match = re.search(r"(http://[a-z.]+:\d+/accounts/invitation/[0-9a-f-]+/[A-Za-z0-9_-]+/)", message)
    assert match, message
    return match.group(1)


def wait_mail(address: str, after: float, count: int) -> list[str]:
    for _ in range(100):
        found = mail_to(address, after)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no mail to {address} in {MAIL_DIR}")

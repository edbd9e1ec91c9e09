"""The tenant admin workspace and the platform operator's screens in Chromium (issue 17, items 4 and 6).

Against the real gunicorn of tests/access (its mail goes to a file outbox) and the test IdPs: the workspace carries
the tenant's name and colours and no platform objects; members are listed with their roles; roles read as sentences;
an invitation is accepted end to end from the mailed link, while an expired, revoked or replaced link is refused; the
SSO form shows the callback URL, refuses to enable SSO before a successful test sign-in, and a real test sign-in
against IdP B then allows it; the platform's health page is coloured and fits 1280 px, and a breaker reset asks for
confirmation. Every page must load without a console error (a CSP violation by an inline script or style is one).
Screenshots for docs/tenants.md and docs/sso.md go to docs/images/ with ATRIUM_SCREENSHOTS=1 (else a temp dir).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.conftest import MAIL_DIR, IdpServers
from tests.chat.browser import no_sideways_panning

pytestmark = [pytest.mark.e2e]  # no test transaction: the server must see what the tests commit

PASSWORD = "pw-Workspace-123"
WIDE = {"width": 1280, "height": 900}
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = DOCS_IMAGES if os.environ.get("ATRIUM_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    return target


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


@pytest.fixture
def people(django_db_blocker: Any) -> Iterator[People]:
    made = People(django_db_blocker)
    yield made
    made.cleanup()


def _page(browser: Any, viewport: dict[str, int] = WIDE) -> Any:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(20_000)
    _watch(page)
    return page


def _watch(page: Any) -> None:
    page.errors = []
    # Only Atrium's pages count: the test IdP's own pages load web fonts that this sandbox cannot reach.
    page.on("pageerror", lambda e: ".localhost:" in page.url and page.errors.append(f"page error: {e}"))
    # A refused inline script or style (CSP without 'unsafe-inline') is reported as a console error.
    page.on("console", lambda m: m.type == "error" and "status of 4" not in m.text and ".localhost:" in page.url
            and page.errors.append(f"{page.url}: {m.text[:150]} at {m.location}"))


def _admin_login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def _mail_to(address: str, after: float) -> list[str]:
    """Bodies of the messages written to the server's file outbox for `address` since `after`."""
    found = []
    for path in sorted(MAIL_DIR.glob("*.log"), key=lambda p: p.stat().st_mtime):
        if path.stat().st_mtime >= after - 1:
            text = path.read_text()
            for message in text.split("-" * 79):
                if f"To: {address}" in message:
                    found.append(message)
    return found


def _link(message: str) -> str:
    match = re.search(r"(http://[a-z.]+:\d+/accounts/invitation/[0-9a-f-]+/[A-Za-z0-9_-]+/)", message)
    assert match, message
    return match.group(1)


def _wait_mail(address: str, after: float, count: int) -> list[str]:
    for _ in range(100):
        found = _mail_to(address, after)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no mail to {address} in {MAIL_DIR}")


def test_tenant_workspace_has_the_tenants_look_an_overview_and_no_platform_objects(
        browser: Any, web_server: str, sso: IdpServers, tenants: dict[str, Any], people: People,
        django_db_blocker: Any, shots: Path) -> None:
    from tenants.models import Tenant

    base = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    with django_db_blocker.unblock():
        before = Tenant.objects.filter(schema_name="alpha").values("brand_colour", "accent_colour").get()
        Tenant.objects.filter(schema_name="alpha").update(brand_colour="#5b2a86", accent_colour="#00796b")
    try:
        page = _page(browser)
        page.goto(f"{base}/admin/login/")
        assert "Django" not in page.content()
        assert page.locator("#atrium-site-header").inner_text() == tenants["alpha"].name
        _admin_login(page, base, admin.username)
        header = page.locator("#header")
        assert page.locator("#atrium-site-header").inner_text() == tenants["alpha"].name
        assert "Django administration" not in page.content() and "Site administration" not in page.content()
        # The tenant's colours, from its stylesheet (no inline style): header and buttons.
        assert header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(91, 42, 134)"
        assert page.locator("#overview-invite").evaluate("e => getComputedStyle(e).backgroundColor") == \
            "rgb(0, 121, 107)"
        for card in ("#card-members", "#card-sso", "#card-policy", "#card-roles"):
            assert page.locator(card).is_visible()
        policy = page.locator("#card-policy").inner_text()
        assert "Longest answer" in policy and "the platform" in policy
        roles = page.locator("#card-roles").inner_text()
        assert "power_user" in roles and "chats with Haiku, Sonnet, Opus" in roles
        # The app list uses the product's words and shows no Celery or platform object.
        text = page.locator("#content-main").text_content() or ""
        assert "People and roles" in text and "Members" in text and "Invitations" in text
        for hidden in ("Periodic tasks", "Crontabs", "Intervals", "Solar events", "Clocked", "Tenants", "Domains",
                       "Catalog models", "Provider health", "Usage per tenant"):
            assert hidden not in text, hidden
        # "View site" leads to the chat, which exists here.
        assert page.locator("#user-tools a:has-text('View site')").get_attribute("href") == "/chat/"
        no_sideways_panning(page)
        page.screenshot(path=str(shots / "tenant-admin-overview.png"), full_page=True)
        for path in ("/admin/django_celery_beat/periodictask/", "/admin/django_celery_beat/crontabschedule/",
                     "/admin/tenants/tenant/", "/admin/catalog/providerhealthcheck/", "/admin/catalog/tenantusage/"):
            assert page.goto(f"{base}{path}").status == 404, path
        # The policy page: the platform's values read-only, the tenant's own (stricter) ones editable.
        page.goto(f"{base}/admin/access/tenantpolicy/")
        assert page.locator("#id_own_max_tokens_per_request").is_editable()
        assert page.locator("#id_max_tokens_per_request").count() == 0
        assert page.locator("fieldset:has-text('Set by the platform (read-only)') .readonly").count() >= 5
        assert not page.errors, page.errors
    finally:
        with django_db_blocker.unblock():
            Tenant.objects.filter(schema_name="alpha").update(**before)


def test_members_listed_with_roles_and_roles_described_in_plain_words(
        browser: Any, web_server: str, sso: IdpServers, people: People, django_db_blocker: Any,
        shots: Path) -> None:
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    base = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    member = people.make("alpha", "basic_user")
    page = _page(browser)
    _admin_login(page, base, admin.username)
    page.goto(f"{base}/admin/auth/user/?q={member.username}")
    row = page.locator(f"#result_list tr:has-text('{member.username}')")
    assert "basic_user" in row.inner_text() and "password" in row.inner_text()
    headers = page.locator("#result_list thead").inner_text().lower()
    assert "roles" in headers and "signs in with" in headers
    assert page.locator("#changelist-filter").inner_text().lower().count("role") >= 1
    page.goto(f"{base}/admin/auth/user/?groups__id__exact="
              f"{_group_pk('alpha', 'basic_user', django_db_blocker)}")
    assert member.username in page.locator("#result_list").inner_text()
    assert admin.username not in page.locator("#result_list").inner_text()
    page.goto(f"{base}/admin/auth/user/")
    no_sideways_panning(page)
    page.screenshot(path=str(shots / "tenant-admin-members.png"))
    # "Add user" is an invitation: nobody types someone else's password.
    page.goto(f"{base}/admin/auth/user/add/")
    assert page.url == f"{base}/admin/access/invitation/add/"

    with django_db_blocker.unblock(), schema_context("alpha"):
        role, _ = Group.objects.get_or_create(name=f"reviewers-{uuid.uuid4().hex[:4]}")
    try:
        page.goto(f"{base}/admin/auth/group/{role.pk}/change/")
        form = page.locator("#group_form").inner_text()
        assert "Using Claude" in form and "People and roles" in form and "Compliance and records" in form
        assert "Use the most capable Opus models" in form and "Invite new members" in form
        assert "access.use_opus" not in form and "Can add" not in form and "use_opus" not in form
        page.check("label:has-text('Send messages to Claude (chat and API)') input")
        page.check("label:has-text('Use the balanced Sonnet models') input")
        page.screenshot(path=str(shots / "tenant-admin-role.png"), full_page=True)
        page.click("input[name=_save]")
        page.wait_for_url(f"{base}/admin/auth/group/")
        assert "chats with Sonnet" in page.locator(f"#result_list tr:has-text('{role.name}')").inner_text()
        with django_db_blocker.unblock(), schema_context("alpha"):
            assert sorted(role.permissions.values_list("codename", flat=True)) == ["use_sonnet", "write"]
        assert not page.errors, page.errors
    finally:
        with django_db_blocker.unblock(), schema_context("alpha"):
            role.delete()


def _group_pk(schema: str, name: str, blocker: Any) -> int:
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    with blocker.unblock(), schema_context(schema):
        return int(Group.objects.get(name=name).pk)


def test_invitation_accepted_end_to_end_and_a_replaced_link_refused(
        browser: Any, web_server: str, sso: IdpServers, people: People, django_db_blocker: Any,
        shots: Path) -> None:
    from django.contrib.auth import get_user_model
    from django_tenants.utils import schema_context

    from access.models import Invitation

    base = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    email = f"newcomer-{uuid.uuid4().hex[:6]}@a.example"
    started = time.time()
    page = _page(browser)
    _admin_login(page, base, admin.username)
    page.goto(f"{base}/admin/auth/user/")
    page.click("#invite-people")
    page.wait_for_url(f"{base}/admin/access/invitation/add/")
    assert page.locator("#id_password1").count() == 0
    page.fill("#id_email", email)
    page.check("label:has-text('basic_user') input")
    page.screenshot(path=str(shots / "tenant-admin-invite.png"), full_page=True)
    page.click("input[name=_save]")
    page.wait_for_url(f"{base}/admin/access/invitation/")
    assert f"Invitation sent to {email}" in page.locator(".messagelist").inner_text()
    row = page.locator(f"#result_list tr:has-text('{email}')")
    assert "Waiting for the invitee" in row.inner_text() and "basic_user" in row.inner_text()
    first_link = _link(_wait_mail(email, started, 1)[-1])

    # Re-send: a new link; the first one stops working.
    row.locator("th a, td a").first.click()
    page.click("#resend-invitation")
    assert "sent again" in page.locator(".messagelist").inner_text()
    second_link = _link(_wait_mail(email, started, 2)[-1])
    assert second_link != first_link

    invitee = _page(browser)
    refused = invitee.goto(first_link)
    assert refused.status == 404 and invitee.locator("#invitation-error").get_attribute("data-reason") == "unknown"
    invitee.goto(second_link)
    assert invitee.locator("#invitee").inner_text() == email
    invitee.fill("#id_password1", "short")
    invitee.fill("#id_password2", "short")
    invitee.click("#set-password")
    invitee.locator("span.error").first.wait_for()  # Django's password validators
    assert "too short" in invitee.locator("#invitation").inner_text()
    invitee.screenshot(path=str(shots / "invitation-accept.png"), full_page=True)
    invitee.fill("#id_password1", "A-fine-Password-42")
    invitee.fill("#id_password2", "A-fine-Password-42")
    invitee.click("#set-password")
    invitee.wait_for_url(re.compile(r".*/accounts/login/\?next=/chat/$"))
    assert "Your password is set" in invitee.content()
    invitee.fill("#id_username", email)
    invitee.fill("#id_password", "A-fine-Password-42")
    invitee.click("button[type=submit]")
    invitee.wait_for_url(re.compile(rf"{re.escape(base)}/(chat|consent)/.*"))
    # The link works once.
    spent = invitee.goto(second_link)
    assert spent.status == 410 and invitee.locator("#invitation-error").get_attribute("data-reason") == "accepted"
    with django_db_blocker.unblock(), schema_context("alpha"):
        user = get_user_model().objects.get(username=email)
        people.made.append(("alpha", int(user.pk)))
        assert sorted(user.groups.values_list("name", flat=True)) == ["basic_user"] and not user.is_staff
        invitation = Invitation.objects.get(email=email)
        assert invitation.accepted_user_id == user.pk and invitation.status == "accepted"
        Invitation.objects.filter(pk=invitation.pk).delete()
    assert not page.errors and not invitee.errors, page.errors + invitee.errors


def test_expired_and_revoked_invitations_are_refused(browser: Any, web_server: str, sso: IdpServers,
                                                     people: People, django_db_blocker: Any) -> None:
    from datetime import timedelta

    from django.contrib.auth.models import Group
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from access.invitations import invitation_create
    from access.models import Invitation

    base = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    started = time.time()
    late, withdrawn = (f"{w}-{uuid.uuid4().hex[:6]}@a.example" for w in ("late", "withdrawn"))
    with django_db_blocker.unblock(), schema_context("alpha"):
        viewer = Group.objects.get(name="viewer")
        for email in (late, withdrawn):
            invitation_create(email=email, roles=[viewer], staff=False, invited_by=admin, base_url=base)
        Invitation.objects.filter(email=late).update(expires_at=timezone.now() - timedelta(minutes=1))
        withdrawn_pk = Invitation.objects.get(email=withdrawn).pk
    from django.core import mail

    links = {m.to[0]: _link(m.body) for m in mail.outbox if m.to[0] in (late, withdrawn)}
    assert set(links) == {late, withdrawn}, started

    page = _page(browser)
    _admin_login(page, base, admin.username)
    page.goto(f"{base}/admin/access/invitation/?status=expired")
    assert late in page.locator("#result_list").inner_text()
    page.goto(f"{base}/admin/access/invitation/{withdrawn_pk}/change/")
    page.click("#revoke-invitation")
    assert "revoked" in page.locator(".messagelist").inner_text()

    invitee = _page(browser)
    expired = invitee.goto(links[late])
    assert expired.status == 410
    assert invitee.locator("#invitation-error").get_attribute("data-reason") == "expired"
    assert "expired" in invitee.locator("#invitation-error").inner_text()
    assert invitee.locator("#id_password1").count() == 0
    revoked = invitee.goto(links[withdrawn])
    assert revoked.status == 410
    assert invitee.locator("#invitation-error").get_attribute("data-reason") == "revoked"
    # A hand-made POST to an expired link creates nothing either.
    with django_db_blocker.unblock(), schema_context("alpha"):
        from django.contrib.auth import get_user_model

        assert not get_user_model().objects.filter(username__in=[late, withdrawn]).exists()
        Invitation.objects.filter(email__in=[late, withdrawn]).delete()
    assert not page.errors and not invitee.errors, page.errors + invitee.errors


def test_sso_test_sign_in_against_the_idp_before_it_can_be_enabled(
        browser: Any, web_server: str, sso: IdpServers, people: People, django_db_blocker: Any,
        shots: Path) -> None:
    from django_tenants.utils import schema_context

    from access.models import OIDCConfig
    from config.redis import redis_client

    base = f"http://beta.localhost:{web_server}"
    admin = people.make("beta", "admin", staff=True)
    from django.db import connection

    from tests.access.conftest import MAPPING_B, _configure

    with django_db_blocker.unblock():
        # Beta's configuration exactly as the session fixture made it (whatever ran before), then switched off.
        _configure(sso_tenants_beta(), sso.b, MAPPING_B)
        with schema_context("beta"):
            OIDCConfig.objects.filter(pk=1).update(enabled=False, tested_at=None, tested_fingerprint="")
        connection.set_schema_to_public()
    redis_client().delete("atrium:oidc-signin-test:beta", "atrium:oidc-test:beta")
    try:
        page = _page(browser)
        _admin_login(page, base, admin.username)
        page.goto(f"{base}/admin/access/oidcconfig/1/change/")
        assert page.locator("#sso-callback-url").inner_text() == f"{base}/oidc/callback/"
        assert page.locator("#sso-logout-url").inner_text() == f"{base}/accounts/login/"
        content = page.locator("#content-main").inner_text()
        assert "Sign in with '." not in content and "after the words “Sign in with”" in content
        assert "not run yet" in page.locator(".field-test_status").inner_text()

        # Enabling without a successful test sign-in is refused with a form error.
        page.check("#id_enabled")
        page.click("input[name=_save]")
        assert "before a successful test sign-in" in page.locator(".errorlist").first.inner_text()
        with django_db_blocker.unblock(), schema_context("beta"):
            assert not OIDCConfig.objects.get().enabled

        # The test sign-in: a new tab, a real round trip through IdP B, the claims shown, nobody signed in.
        page.goto(f"{base}/admin/access/oidcconfig/1/change/")
        with page.context.expect_page() as opened:
            page.click("#test-sign-in")
        tab = opened.value
        tab.set_default_timeout(60_000)  # a loaded machine: the IdP's first page can be slow to come
        _watch(tab)
        tab.wait_for_url(re.compile(rf"({re.escape(sso.b.issuer)}/interaction/|{re.escape(base)}/admin/).*"))
        assert tab.url.startswith(sso.b.issuer), tab.locator("body").inner_text()
        tab.fill("input[name=login]", "bob")
        tab.fill("input[name=password]", "any-password")
        tab.click("button[type=submit]")
        tab.wait_for_url(f"{base}/oidc/callback/**")
        result = tab.locator("#sso-test-result")
        assert result.get_attribute("data-ok") == "true", result.inner_text()
        assert tab.locator("#sso-test-roles").inner_text() == "basic_user"
        claims = tab.locator("#sso-test-claims").inner_text()
        assert "bob@b.example" in claims and sso.b.issuer in claims
        assert "id_token" not in claims and "access_token" not in claims
        tab.screenshot(path=str(shots / "sso-test-result.png"), full_page=True)
        # Still signed in as the administrator, not as bob.
        me = tab.evaluate("fetch('/api/access/me/', {headers: {Accept: 'application/json'}}).then(r => r.json())")
        assert me["username"] == admin.username

        page.reload()
        assert "with the current settings" in page.locator(".field-test_status").inner_text()
        page.screenshot(path=str(shots / "sso-config.png"), full_page=True)
        page.check("#id_enabled")
        page.click("input[name=_save]")
        page.wait_for_url(f"{base}/admin/access/oidcconfig/**")
        assert page.locator(".errorlist").count() == 0
        with django_db_blocker.unblock(), schema_context("beta"):
            assert OIDCConfig.objects.get().enabled
        assert not page.errors and not tab.errors, page.errors + tab.errors
    finally:
        with django_db_blocker.unblock(), schema_context("beta"):
            OIDCConfig.objects.filter(pk=1).update(enabled=True)


def sso_tenants_beta() -> Any:
    from tenants.models import Tenant

    return Tenant.objects.get(schema_name="beta")


def test_sso_form_refuses_an_unreachable_idp_as_enabled(browser: Any, web_server: str, sso: IdpServers,
                                                        people: People, django_db_blocker: Any) -> None:
    from django_tenants.utils import schema_context

    from access.models import OIDCConfig

    base = f"http://beta.localhost:{web_server}"
    admin = people.make("beta", "admin", staff=True)
    with django_db_blocker.unblock(), schema_context("beta"):
        original = OIDCConfig.objects.values("discovery_url", "enabled").get()
    try:
        page = _page(browser)
        _admin_login(page, base, admin.username)
        page.goto(f"{base}/admin/access/oidcconfig/1/change/")
        page.fill("#id_discovery_url", "http://127.0.0.1:9/.well-known/openid-configuration")  # nothing listens
        page.check("#id_enabled")
        page.click("input[name=_save]")
        error = page.locator(".errorlist").first.inner_text()
        assert "not reachable or not usable" in error and "unreachable" in error
        with django_db_blocker.unblock(), schema_context("beta"):
            assert OIDCConfig.objects.values("discovery_url", "enabled").get() == original
    finally:
        with django_db_blocker.unblock(), schema_context("beta"):
            OIDCConfig.objects.filter(pk=1).update(**original)


@pytest.fixture
def platform_root(django_db_blocker: Any) -> Iterator[Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        root = get_user_model().objects.create_superuser(f"operator-{uuid.uuid4().hex[:6]}", "op@example.com",
                                                         PASSWORD)
    yield root
    from django.contrib.admin.models import LogEntry

    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        # Not Model.delete(): its cascade would look for tenant-only tables (identities, keys) in the public schema.
        LogEntry.objects.filter(user_id=root.pk)._raw_delete("default")
        get_user_model().objects.filter(pk=root.pk)._raw_delete("default")


def test_platform_health_in_colour_fits_1280_and_breaker_reset_asks_first(
        browser: Any, web_server: str, sso: IdpServers, platform_root: Any, django_db_blocker: Any,
        shots: Path) -> None:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from inference.breaker import breaker_record_failure, breaker_reset, breaker_state
    from inference.catalog.models import ProviderHealthCheck

    base = f"http://localhost:{web_server}"
    target = "bedrock:eu-west-1"
    now = timezone.now()
    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        made = [ProviderHealthCheck.objects.create(
            target=target, status=status, latency_ms=120 + i, http_status=200 if status == "up" else 529,
            detail="" if status == "up" else "overloaded (HTTP 529) from the upstream provider in eu-west-1",
            checked_at=now - timedelta(minutes=30 - i)).pk
            for i, status in enumerate(["up"] * 20 + ["down", "down", "misconfigured", "up", "down"] * 2)]
    breaker_record_failure(target, reason="health check failed: HTTP 529", force_open=True)
    try:
        page = _page(browser)
        _admin_login(page, base, platform_root.username)
        assert page.locator("#user-tools a:has-text('View site')").count() == 0  # no link to a 404
        page.goto(f"{base}/admin/catalog/providerhealthcheck/")
        row = page.locator(f"#provider-status tr:has-text('{target}')")
        assert row.locator(".h-down").count() >= 5 and row.locator(".h-up").count() >= 20
        assert row.locator(".h-down").first.evaluate("e => getComputedStyle(e).backgroundColor") == \
            "rgb(198, 40, 40)"
        assert row.locator(".h-up").first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(46, 125, 50)"
        assert row.locator(".atrium-badge-open").count() == 1
        no_sideways_panning(page)
        table = page.locator("#provider-status").bounding_box()
        assert table is not None and table["x"] + table["width"] <= 1280
        # The history below is not clipped inside its scroll box either: every column is in view.
        assert page.evaluate("() => { const r = document.querySelector('#changelist .results');"
                             " return r.scrollWidth <= r.clientWidth; }")
        page.screenshot(path=str(shots / "platform-health.png"), full_page=True)

        page.locator(f"a[href$='/reset/{target}/']").first.click()
        assert page.locator("#reset-target").inner_text() == target
        page.screenshot(path=str(shots / "platform-breaker-reset.png"))
        page.click("#cancel-reset")
        page.wait_for_url(f"{base}/admin/catalog/providerhealthcheck/")
        assert breaker_state(target).state == "open"
        page.locator(f"a[href$='/reset/{target}/']").first.click()
        page.click("#confirm-reset")
        page.wait_for_url(f"{base}/admin/catalog/providerhealthcheck/")
        assert f"Circuit breaker of {target} reset" in page.locator(".messagelist").inner_text()
        assert breaker_state(target).state == "closed"
        assert not page.errors, page.errors
    finally:
        breaker_reset(target)
        with django_db_blocker.unblock():
            connection.set_schema_to_public()
            ProviderHealthCheck.objects.filter(pk__in=made).delete()


def test_the_wrong_side_sees_nothing(browser: Any, web_server: str, sso: IdpServers, people: People) -> None:
    alpha = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    member = people.make("alpha", "power_user")
    page = _page(browser)
    _admin_login(page, alpha, admin.username)
    # A tenant administrator has no URL for platform objects on its host, and is not signed in on the platform's.
    for path in ("/admin/tenants/tenant/", "/admin/tenants/domain/", "/admin/django_celery_beat/periodictask/",
                 "/admin/catalog/catalogmodel/", "/admin/catalog/providerhealthcheck/reset/anthropic/"):
        assert page.goto(f"{alpha}{path}").status == 404, path
    page.goto(f"http://localhost:{web_server}/admin/")
    assert "/admin/login/" in page.url
    # Nor on another tenant's host.
    page.goto(f"http://beta.localhost:{web_server}/admin/")
    assert "/admin/login/" in page.url

    # A member without the staff flag: a plain 403, not a sign-in form.
    other = _page(browser)
    other.goto(f"{alpha}/accounts/login/?next=/chat/")
    other.fill("#id_username", member.username)
    other.fill("#id_password", PASSWORD)
    other.click("button[type=submit]")
    other.wait_for_url(re.compile(rf"{re.escape(alpha)}/(chat|consent)/.*"))
    for path in ("/admin/", "/admin/auth/user/", "/admin/access/invitation/add/", "/admin/access/oidcconfig/"):
        assert other.goto(f"{alpha}{path}").status == 403, path
    # Anonymous: sent to the sign-in page.
    anonymous = _page(browser)
    anonymous.goto(f"{alpha}/admin/access/invitation/")
    assert "/admin/login/" in anonymous.url

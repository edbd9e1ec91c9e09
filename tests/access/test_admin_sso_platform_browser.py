"""The SSO form's test sign-in and the platform operator's screens in Chromium (issue 17, items 4 and 6): the
callback URL to register, enabling refused before a successful test sign-in or with an unreachable IdP, a real test
sign-in against IdP B; provider health in colour within 1280 px and the breaker reset's confirmation; the wrong side
(a tenant administrator, a member without the staff flag, an anonymous visitor) sees nothing. Helpers:
admin_browser.py.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.admin_browser import (
    PASSWORD,
    People,
    admin_login,
    admin_page,
    watch,
)
from tests.access.conftest import IdpServers
from tests.chat.browser import no_sideways_panning

pytestmark = [pytest.mark.e2e]  # no test transaction: the server must see what the tests commit


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
        page = admin_page(browser)
        admin_login(page, base, admin.username)
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
        watch(tab)
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
        page = admin_page(browser)
        admin_login(page, base, admin.username)
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
        page = admin_page(browser)
        admin_login(page, base, platform_root.username)
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
    page = admin_page(browser)
    admin_login(page, alpha, admin.username)
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
    other = admin_page(browser)
    other.goto(f"{alpha}/accounts/login/?next=/chat/")
    other.fill("#id_username", member.username)
    other.fill("#id_password", PASSWORD)
    other.click("button[type=submit]")
    other.wait_for_url(re.compile(rf"{re.escape(alpha)}/(chat|consent)/.*"))
    for path in ("/admin/", "/admin/auth/user/", "/admin/access/invitation/add/", "/admin/access/oidcconfig/"):
        assert other.goto(f"{alpha}{path}").status == 403, path
    # Anonymous: sent to the sign-in page.
    anonymous = admin_page(browser)
    anonymous.goto(f"{alpha}/admin/access/invitation/")
    assert "/admin/login/" in anonymous.url

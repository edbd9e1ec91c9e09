"""Browser SSO end to end: Chromium signs in on tenant alpha through its own IdP (oidc-provider),
with PKCE, and lands with the role from its group claim; tenant beta stays signed out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.access.conftest import IdpServers


def _idp_login(page: Any, idp: Any, login: str) -> None:
    page.wait_for_url(f"{idp.issuer}/interaction/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any-password")
    page.click("button[type=submit]")


def _identities(tenants: dict[str, Any], slug: str, django_db_blocker: Any) -> list[tuple[str, str, list[str]]]:
    from django.db import connection
    from django_tenants.utils import schema_context

    from access.models import UserIdentity

    with django_db_blocker.unblock(), schema_context(slug):
        rows = [(i.issuer, i.subject, sorted(i.user.groups.values_list("name", flat=True)))
                for i in UserIdentity.objects.select_related("user")]
    connection.set_schema_to_public()
    return rows


@pytest.mark.e2e
@pytest.mark.django_db
def test_browser_sso_login_role_and_tenant_isolation(browser: Any, web_server: str, sso: IdpServers,
                                                     tenants: dict[str, Any], django_db_blocker: Any) -> None:
    alpha = f"http://alpha.localhost:{web_server}"
    beta = f"http://beta.localhost:{web_server}"
    context = browser.new_context()
    page = context.new_page()

    page.goto(f"{alpha}/accounts/login/?next=/account/keys/")
    assert page.inner_text("#sso-login") == "Sign in with IdP A"
    page.click("#sso-login")
    # The authorization request carries state, nonce and an S256 PKCE challenge (the IdP requires PKCE).
    _idp_login(page, sso.a, "alice")
    page.wait_for_url(f"{alpha}/account/keys/")
    assert page.locator("h1").inner_text() == "API keys"

    # fetch() from the page: the browser resolves *.localhost itself, Node's resolver would not.
    me = page.evaluate("fetch('/api/access/me/', {headers: {Accept: 'application/json'}}).then(r => r.json())")
    assert me["tenant"] == "alpha"
    assert me["roles"] == ["power_user"]  # from the "atrium-power" group claim
    assert me["email"] == "alice@a.example"
    assert me["auth_method"] == "session"
    assert (sso.a.issuer, "alice", ["power_user"]) in _identities(tenants, "alpha", django_db_blocker)

    # Same browser, other tenant: not signed in there, and no identity was created in beta.
    page.goto(f"{beta}/account/keys/")
    assert page.url.startswith(f"{beta}/accounts/login/")
    assert not [row for row in _identities(tenants, "beta", django_db_blocker) if row[1] == "alice"]

    # Sign out ends the local session and hands over to the IdP's end-session endpoint.
    page.goto(f"{alpha}/account/keys/")
    page.click("text=Sign out")
    page.wait_for_url(f"{sso.a.issuer}/session/end**")
    page.goto(f"{alpha}/account/keys/")
    assert page.url.startswith(f"{alpha}/accounts/login/")
    context.close()


@pytest.mark.e2e
@pytest.mark.django_db
def test_browser_sso_refuses_a_domain_that_is_not_allowed(browser: Any, web_server: str, sso: IdpServers,
                                                          tenants: dict[str, Any], django_db_blocker: Any) -> None:
    alpha = f"http://alpha.localhost:{web_server}"
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{alpha}/oidc/authenticate/")
    _idp_login(page, sso.a, "mallory")  # mallory@evil.example; alpha admits only a.example
    page.wait_for_url(f"{alpha}/oidc/callback/**")
    error = page.locator("#sso-error")
    assert error.get_attribute("data-reason") == "domain_not_allowed"
    assert "evil.example" in error.inner_text()
    page.goto(f"{alpha}/account/keys/")
    assert page.url.startswith(f"{alpha}/accounts/login/")
    assert not [row for row in _identities(tenants, "alpha", django_db_blocker) if row[1] == "mallory"]
    context.close()

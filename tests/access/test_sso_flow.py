"""The SSO endpoints without a browser: per-tenant authorization requests (PKCE, state, nonce),
and every way a callback can fail ends on a page that says why, never a 500."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.access.conftest import IdpServers


def _start(client: Any) -> tuple[str, dict[str, list[str]]]:
    response = client.get("/oidc/authenticate/?next=/account/keys/")
    assert response.status_code == 302
    location = response["Location"]
    return location, parse_qs(urlsplit(location).query)


@pytest.mark.django_db
def test_each_tenant_redirects_to_its_own_idp_with_pkce(client_a: Any, client_b: Any, sso: IdpServers,
                                                        in_tenant: Any, tenant_a: Any) -> None:
    location_a, query_a = _start(client_a)
    location_b, query_b = _start(client_b)
    assert location_a.startswith(f"{sso.a.issuer}/auth?")
    assert location_b.startswith(f"{sso.b.issuer}/auth?")
    assert query_a["client_id"] == [sso.a.client_id]
    assert query_b["client_id"] == [sso.b.client_id]
    assert query_a["redirect_uri"] == ["http://alpha.localhost/oidc/callback/"]
    assert query_a["code_challenge_method"] == ["S256"]
    assert len(query_a["code_challenge"][0]) == 43  # base64url SHA-256
    assert query_a["scope"] == ["openid email profile groups"]
    assert query_a["state"] != query_b["state"]
    assert query_a["nonce"][0]
    with in_tenant(tenant_a):  # sessions live in the tenant's schema
        session_states = client_a.session["oidc_states"]
    assert query_a["state"][0] in session_states
    assert session_states[query_a["state"][0]]["code_verifier"]


@pytest.mark.django_db
def test_callback_failures_render_a_reason(client_a: Any, sso: IdpServers) -> None:
    # No sign-in was started in this session.
    response = client_a.get("/oidc/callback/?code=abc&state=nope")
    assert response.status_code == 403
    assert b"could not be completed" in response.content

    _location, query = _start(client_a)
    state = query["state"][0]
    # Unknown state while a sign-in is pending: refused, no 500.
    response = client_a.get("/oidc/callback/?code=abc&state=forged-state")
    assert response.status_code == 400
    assert b'data-reason="state"' in response.content

    # The IdP refuses a made-up authorization code at its token endpoint.
    response = client_a.get(f"/oidc/callback/?code=made-up-code&state={state}")
    assert response.status_code == 403
    assert b'data-reason="token_exchange"' in response.content

    # The state is single-use: replaying it fails too.
    response = client_a.get(f"/oidc/callback/?code=made-up-code&state={state}")
    assert response.status_code in (400, 403)

    # The user cancelled at the IdP.
    _location, query = _start(client_a)
    response = client_a.get(f"/oidc/callback/?error=access_denied&state={query['state'][0]}")
    assert response.status_code == 403
    assert b'data-reason="idp_error"' in response.content


@pytest.mark.django_db
def test_unreachable_idp_gives_a_page_not_a_500(client_a: Any, sso: IdpServers, in_tenant: Any,
                                                tenant_a: Any) -> None:
    from access.models import OIDCConfig

    with in_tenant(tenant_a):
        OIDCConfig.objects.filter(pk=1).update(discovery_url="http://127.0.0.1:9/.well-known/openid-configuration")
    response = client_a.get("/oidc/authenticate/")
    assert response.status_code == 502
    assert b'data-reason="idp_unreachable"' in response.content


@pytest.mark.django_db
def test_password_login_never_reaches_the_idp(client_a: Any, sso: IdpServers, tenant_a: Any,
                                              make_user: Any) -> None:
    user = make_user(tenant_a, role="admin", password="pw-Secret-123")
    response = client_a.post("/accounts/login/?code=x&state=y",
                             {"username": user.username, "password": "pw-Secret-123"})
    assert response.status_code == 302
    response = client_a.post("/oidc/logout/")
    # No id_token in a password session: only the local session ends.
    assert response["Location"] == "/accounts/login/"
    assert client_a.get("/account/keys/").status_code == 302

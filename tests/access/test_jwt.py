"""Bearer JWTs from the tenant's IdP (a real oidc-provider on loopback): accepted when genuine,
refused with a 401 that says why (and for which tenant) when forged, expired or foreign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.access.conftest import IdpServers, b64url

ME = "/api/access/me/"


def bearer(client: Any, token: str) -> Any:
    return client.get(ME, HTTP_AUTHORIZATION=f"Bearer {token}")


def claims_for(idp: Any, **extra: Any) -> dict[str, Any]:
    sub = f"user-{uuid.uuid4().hex[:10]}"
    base = {"sub": sub, "aud": idp.client_id, "email": f"{sub}@a.example", "email_verified": True,
            "preferred_username": sub, "groups": ["atrium-basic"]}
    base.update(extra)
    return base


@pytest.fixture
def idp_a(sso: IdpServers) -> Any:
    return sso.a


@pytest.fixture
def idp_b(sso: IdpServers) -> Any:
    return sso.b


def assert_refused(response: Any, reason_fragment: str) -> None:
    assert response.status_code == 401, response.content
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    detail = error["message"]
    assert reason_fragment in detail, detail
    assert "tenant alpha" in detail
    assert response["WWW-Authenticate"] == 'Bearer realm="alpha"'


@pytest.mark.django_db
def test_genuine_tokens_are_accepted_and_map_roles(client_a: Any, idp_a: Any) -> None:
    claims = claims_for(idp_a, groups=["atrium-power", "not-mapped"])
    for alg in ("RS256", "ES256"):
        response = bearer(client_a, idp_a.mint(claims, alg=alg))
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["auth_method"] == "jwt"
        assert body["tenant"] == "alpha"
        assert body["roles"] == ["power_user"]
        assert body["tiers"] == ["opus", "sonnet", "haiku"]


@pytest.mark.django_db
def test_first_seen_user_is_created_and_matched_on_issuer_and_subject(
        client_a: Any, idp_a: Any, in_tenant: Any, tenant_a: Any, make_user: Any) -> None:
    from django.contrib.auth import get_user_model

    from access.models import UserIdentity

    # A local account with the same username and email must not be taken over by the IdP user.
    local = make_user(tenant_a, role="admin", username="carol")
    with in_tenant(tenant_a):
        get_user_model().objects.filter(pk=local.pk).update(email="carol@a.example")
    claims = claims_for(idp_a, preferred_username="carol", email="carol@a.example")
    first = bearer(client_a, idp_a.mint(claims)).json()
    second = bearer(client_a, idp_a.mint(claims)).json()
    assert first["username"] == second["username"] != "carol"
    assert first["roles"] == ["basic_user"]
    with in_tenant(tenant_a):
        identity = UserIdentity.objects.get(issuer=idp_a.issuer, subject=claims["sub"])
        assert identity.user.username == first["username"]
        assert identity.user.pk != local.pk
        assert not identity.user.has_usable_password()


@pytest.mark.django_db
def test_roles_sync_from_claims_only_for_mapped_roles(
        client_a: Any, idp_a: Any, in_tenant: Any, tenant_a: Any) -> None:
    from django.contrib.auth.models import Group

    from access.models import UserIdentity

    claims = claims_for(idp_a, groups=["atrium-basic"])
    assert bearer(client_a, idp_a.mint(claims)).json()["roles"] == ["basic_user"]
    with in_tenant(tenant_a):
        user = UserIdentity.objects.get(subject=claims["sub"]).user
        # A role granted by hand that is also in the mapping is managed; "viewer" is not in alpha's mapping.
        user.groups.add(Group.objects.get(name="viewer"))
    claims["groups"] = "atrium-power atrium-compliance"  # space-separated strings are accepted too
    assert bearer(client_a, idp_a.mint(claims)).json()["roles"] == ["compliance_officer", "power_user", "viewer"]
    claims["groups"] = []
    assert bearer(client_a, idp_a.mint(claims)).json()["roles"] == ["viewer"]


def _forge_none(claims: dict[str, Any]) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def _forge_hs256_with_public_key(idp: Any, claims: dict[str, Any]) -> str:
    """The classic key-confusion attack: HMAC-sign with the IdP's public RSA key as the secret."""
    jwk = next(k for k in idp.jwks() if k["kty"] == "RSA")
    public = jwt.PyJWK(jwk).key
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def _rogue_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("alg_none", "not accepted"),
        ("hs256_public_key", "not accepted"),
        ("expired", "expired"),
        ("not_yet_valid", "not yet valid"),
        ("wrong_issuer", "another issuer"),
        ("wrong_audience", "audience"),
        ("no_exp", "'exp'"),
        ("unknown_kid", "unknown key"),
        ("known_kid_wrong_key", "signature is invalid"),
        ("tenant_b_token", "another issuer"),
        ("tenant_b_token_for_a_client", "another issuer"),
        ("garbage", "malformed"),
    ],
)
def test_forged_tokens_are_refused(variant: str, reason: str, client_a: Any, idp_a: Any, idp_b: Any) -> None:
    claims = claims_for(idp_a)
    now = int(time.time())
    if variant == "alg_none":
        token = _forge_none({**claims, "iss": idp_a.issuer, "exp": now + 300})
    elif variant == "hs256_public_key":
        token = _forge_hs256_with_public_key(idp_a, {**claims, "iss": idp_a.issuer, "exp": now + 300})
    elif variant == "expired":
        token = idp_a.mint({**claims, "iat": now - 7200, "exp": now - 3600})
    elif variant == "not_yet_valid":
        token = idp_a.mint({**claims, "nbf": now + 3600, "exp": now + 7200})
    elif variant == "wrong_issuer":
        token = idp_a.mint({**claims, "iss": "http://127.0.0.1:1/evil"})
    elif variant == "wrong_audience":
        token = idp_a.mint({**claims, "aud": "some-other-client"})
    elif variant == "no_exp":
        token = idp_a.mint({**claims, "exp": None})
    elif variant == "unknown_kid":
        token = jwt.encode({**claims, "iss": idp_a.issuer, "exp": now + 300}, _rogue_key(), algorithm="RS256",
                           headers={"kid": "rogue-key-1"})
    elif variant == "known_kid_wrong_key":
        kid = next(k["kid"] for k in idp_a.jwks() if k["kty"] == "RSA")
        token = jwt.encode({**claims, "iss": idp_a.issuer, "exp": now + 300}, _rogue_key(), algorithm="RS256",
                           headers={"kid": kid})
    elif variant == "tenant_b_token":
        token = idp_b.mint({**claims, "aud": idp_b.client_id})
    elif variant == "tenant_b_token_for_a_client":
        token = idp_b.mint({**claims, "aud": idp_a.client_id})
    else:
        token = "not-a.jwt"
    assert_refused(bearer(client_a, token), reason)


@pytest.mark.django_db
def test_clock_skew_allowance(client_a: Any, idp_a: Any, settings: Any) -> None:
    settings.ATRIUM_JWT_LEEWAY_S = 30
    now = int(time.time())
    claims = claims_for(idp_a)
    assert bearer(client_a, idp_a.mint({**claims, "exp": now - 5})).status_code == 200
    assert bearer(client_a, idp_a.mint({**claims, "nbf": now + 5})).status_code == 200
    assert bearer(client_a, idp_a.mint({**claims, "exp": now - 120})).status_code == 401


@pytest.mark.django_db
def test_token_of_tenant_b_works_on_b_only(client_a: Any, client_b: Any, idp_b: Any) -> None:
    claims = {"sub": f"bob-{uuid.uuid4().hex[:6]}", "aud": idp_b.client_id, "groups": ["atrium-basic"]}
    token = idp_b.mint(claims)
    response = bearer(client_b, token)
    assert response.status_code == 200
    assert response.json()["tenant"] == "beta"
    assert response.json()["roles"] == ["basic_user"]
    assert bearer(client_a, token).status_code == 401


@pytest.mark.django_db
def test_disallowed_email_domain_is_refused(client_a: Any, idp_a: Any) -> None:
    response = bearer(client_a, idp_a.mint(claims_for(idp_a, email="eve@evil.example")))
    assert_refused(response, "evil.example")


@pytest.mark.django_db
def test_jwks_is_cached_and_unknown_kids_refetch_at_most_once_per_interval(
        client_a: Any, idp_a: Any, in_tenant: Any, tenant_a: Any) -> None:
    from access.models import OIDCConfig
    from access.oidc import _cache_key, discovery
    from config.redis import redis_client

    with in_tenant(tenant_a):
        jwks_uri = discovery(OIDCConfig.objects.get())["jwks_uri"]
    r = redis_client()
    r.delete(_cache_key("jwks", jwks_uri), _cache_key("jwks-refresh", jwks_uri))
    before = idp_a.stats()["jwks"]
    claims = claims_for(idp_a)
    for _ in range(3):
        assert bearer(client_a, idp_a.mint(claims)).status_code == 200
    assert idp_a.stats()["jwks"] == before + 1  # fetched once, then served from the cache

    rogue = _rogue_key()
    now = int(time.time())

    def unknown_kid_token() -> str:
        return jwt.encode({**claims, "iss": idp_a.issuer, "exp": now + 300}, rogue, algorithm="RS256",
                          headers={"kid": f"rogue-{uuid.uuid4().hex}"})

    for _ in range(15):
        assert bearer(client_a, unknown_kid_token()).status_code == 401
    assert idp_a.stats()["jwks"] == before + 1  # just fetched: the flood caused no refetch
    r.delete(_cache_key("jwks-refresh", jwks_uri))  # the refresh interval has passed
    for _ in range(15):
        assert bearer(client_a, unknown_kid_token()).status_code == 401
    assert idp_a.stats()["jwks"] == before + 2  # exactly one refetch for the whole flood


@pytest.mark.django_db
def test_rotated_key_is_found_by_one_refresh(client_a: Any, idp_a: Any, in_tenant: Any, tenant_a: Any) -> None:
    """A cached key set that lacks the token's kid (the IdP rotated) is refreshed once, then the token passes."""
    from access.models import OIDCConfig
    from access.oidc import _cache_key, discovery
    from config.redis import redis_client

    with in_tenant(tenant_a):
        jwks_uri = discovery(OIDCConfig.objects.get())["jwks_uri"]
    stale = [{"kty": "RSA", "kid": "retired", "alg": "RS256", "use": "sig",
              "n": b64url(b"\x01" * 256), "e": "AQAB"}]
    r = redis_client()
    r.set(_cache_key("jwks", jwks_uri), json.dumps(stale))
    r.delete(_cache_key("jwks-refresh", jwks_uri))
    before = idp_a.stats()["jwks"]
    assert bearer(client_a, idp_a.mint(claims_for(idp_a))).status_code == 200
    assert idp_a.stats()["jwks"] == before + 1


@pytest.mark.django_db
def test_unreachable_idp_and_disabled_sso_are_401_not_500(client_a: Any, idp_a: Any, in_tenant: Any,
                                                           tenant_a: Any) -> None:
    from access.models import OIDCConfig

    token = idp_a.mint(claims_for(idp_a))
    with in_tenant(tenant_a):
        OIDCConfig.objects.filter(pk=1).update(discovery_url="http://127.0.0.1:9/.well-known/openid-configuration")
    assert_refused(bearer(client_a, token), "unreachable")
    with in_tenant(tenant_a):
        OIDCConfig.objects.filter(pk=1).update(enabled=False)
    assert_refused(bearer(client_a, token), "SSO is not configured")


@pytest.mark.django_db
def test_authenticate_api_request_for_v1_views(rf: Any, idp_a: Any, in_tenant: Any, tenant_a: Any) -> None:
    """The plain function the /v1/ views call: same checks, typed errors instead of DRF's."""
    from access.authentication import authenticate_api_request
    from access.errors import AuthenticationFailed

    token = idp_a.mint(claims_for(idp_a))
    with in_tenant(tenant_a):
        user, info = authenticate_api_request(rf.get("/v1/messages", HTTP_AUTHORIZATION=f"Bearer {token}"))
        assert (info.method, info.issuer, info.tenant) == ("jwt", idp_a.issuer, "alpha")
        assert user.is_authenticated
        with pytest.raises(AuthenticationFailed, match="no API credentials") as info_none:
            authenticate_api_request(rf.get("/v1/messages"))
        assert info_none.value.status == 401
        expired = idp_a.mint({**claims_for(idp_a), "exp": int(time.time()) - 3600})
        with pytest.raises(AuthenticationFailed, match="expired"):
            authenticate_api_request(rf.get("/v1/messages", HTTP_AUTHORIZATION=f"Bearer {expired}"))


def test_b64url_helper_round_trips() -> None:
    assert base64.urlsafe_b64decode(b64url(b"\xff\xfe") + "==") == b"\xff\xfe"


@pytest.mark.django_db
def test_repeat_token_requests_write_nothing(client_a: Any, idp_a: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    claims = claims_for(idp_a, groups=["atrium-power"])
    token = idp_a.mint(claims)
    assert bearer(client_a, token).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert bearer(client_a, token).status_code == 200
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []

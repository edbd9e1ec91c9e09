"""Issue 14: passkeys (access/passkeys.py) without a browser: the relying party per tenant host, the ceremonies'
refusals for anyone not signed in or not yet verified, and an administrator's audited removal of a lost passkey.
The ceremonies themselves run in Chromium: tests/security/test_passkeys_browser.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, RequestFactory
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from access.passkeys import TenantWebAuthnHelper, origin, rp_id
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db
BEGIN = "/account/mfa/passkey/registration/begin/"
VERIFY_BEGIN = "/account/mfa/passkey/authentication/begin/"


@pytest.fixture(autouse=True)
def enforced(settings: Any) -> None:
    settings.ATRIUM_MFA_ENFORCED = True


def _client(host: str, tenant: Any, user: Any, in_tenant: Any) -> Client:
    client = Client(HTTP_HOST=host)
    with in_tenant(tenant):
        client.force_login(user)
    return client


def test_the_relying_party_is_the_host_of_the_request() -> None:
    factory = RequestFactory()
    alpha = factory.get("/", HTTP_HOST="alpha.localhost:9300")
    beta = factory.get("/", HTTP_HOST="beta.localhost", secure=True)
    assert rp_id(alpha) == "alpha.localhost" and origin(alpha) == "http://alpha.localhost:9300"
    assert rp_id(beta) == "beta.localhost" and origin(beta) == "https://beta.localhost"
    helper = TenantWebAuthnHelper(beta)
    assert helper.get_relying_party_domain() == "beta.localhost"
    assert helper.get_allowed_origins() == ["https://beta.localhost"]


def test_registration_options_name_the_tenant_host(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    admin = make_user(tenant_a, "admin", is_staff=True)
    client = _client("alpha.localhost", tenant_a, admin, in_tenant)
    options = client.post(BEGIN, content_type="application/json", data={})
    assert options.status_code == 200, options.content
    body = options.json()
    assert body["rp"]["id"] == "alpha.localhost" and "Alpha" in body["rp"]["name"]
    assert body["authenticatorSelection"]["residentKey"] == "preferred"  # second factor, not passwordless


def test_ceremonies_refuse_visitors_and_unverified_users(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    anonymous = Client(HTTP_HOST="alpha.localhost")
    for url in (BEGIN, VERIFY_BEGIN):
        refused = anonymous.post(url, content_type="application/json", data={})
        assert refused.status_code == 403 and refused.json()["code"] == "not_authenticated", url
    # Someone who knows the password of a user with a TOTP device cannot add a passkey to skip the code.
    admin = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    client = _client("alpha.localhost", tenant_a, admin, in_tenant)
    refused = client.post(BEGIN, content_type="application/json", data={})
    assert refused.status_code == 403 and refused.json()["code"] == "user_not_verified"
    assert client.get("/admin/").status_code == 302
    # Malformed bodies are a 4xx, not a 500.
    client.post(VERIFY_BEGIN, content_type="application/json", data={})
    for junk in (b"{", b"[]", b'{"id": 5}', b'"x"'):
        answer = client.post("/account/mfa/passkey/authentication/complete/", data=junk,
                             content_type="application/json")
        assert 400 <= answer.status_code < 500, (junk, answer.status_code)
        client.post(VERIFY_BEGIN, content_type="application/json", data={})


def test_an_administrator_removes_a_lost_passkey(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                 tenant_update: Any) -> None:
    tenant_update(tenant_a, mfa_required_for_admins=False)
    user = make_user(tenant_a, "compliance_officer")
    admin = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        passkey = WebAuthnCredential.objects.create(user=user, name="lost key", confirmed=True,
                                                    credential_id=b"lost-credential", public_key=b"\x00",
                                                    sign_count=0)
    client = _client("alpha.localhost", tenant_a, admin, in_tenant)
    listing = client.get("/admin/django_otp_webauthn/webauthncredential/")
    assert listing.status_code == 200 and b"lost key" in listing.content
    assert client.get("/admin/django_otp_webauthn/webauthncredential/add/").status_code == 403
    removed = client.post(f"/admin/django_otp_webauthn/webauthncredential/{passkey.pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    with in_tenant(tenant_a):
        assert not WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
        entry = AuditEntry.objects.get(event_type="mfa_device_removed", user_id=admin.pk)
        assert entry.metadata["method"] == "webauthn"
    # A member without access.admin sees no passkeys at all.
    member = make_user(tenant_a, "basic_user", is_staff=True)
    assert _client("alpha.localhost", tenant_a, member, in_tenant).get(
        "/admin/django_otp_webauthn/webauthncredential/").status_code in (403, 404)

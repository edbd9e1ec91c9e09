"""Issue 14, "sign-in": no second factor for admins. Now: TOTP (django-otp) for staff and compliance roles when the
tenant requires it (the default), enrolment with a QR code and the secret, verification at each sign-in, an
administrator's removal of a lost device; SSO sign-ins count when the IdP's amr/acr say a second factor was used."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from access.mfa import SSO_MFA_SESSION_KEY, claims_prove_mfa
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def enforced(settings: Any) -> None:
    settings.ATRIUM_MFA_ENFORCED = True


def _code(device: TOTPDevice, drift: int = 0) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=drift):06d}"


def _client(tenant: Any, user: Any, in_tenant: Any) -> Client:
    client = Client(HTTP_HOST="alpha.localhost")
    with in_tenant(tenant):
        client.force_login(user)
    return client


def test_admin_enrols_then_verifies_at_each_sign_in(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    admin = make_user(tenant_a, "admin", is_staff=True)
    client = _client(tenant_a, admin, in_tenant)
    first = client.get("/admin/")
    assert first.status_code == 302 and first["Location"] == "/account/mfa/setup/?next=/admin/"
    page = client.get(first["Location"])
    assert page.status_code == 200 and b"<svg" in page.content and b'id="mfa-secret"' in page.content
    assert "no-store" in page["Cache-Control"]
    with in_tenant(tenant_a):
        device = TOTPDevice.objects.get(user=admin)
        assert not device.confirmed
    assert client.post("/account/mfa/setup/", {"token": "12345", "next": "/admin/"}).status_code == 400  # malformed
    done = client.post("/account/mfa/setup/", {"token": _code(device), "next": "/admin/"})
    assert done.status_code == 302 and done["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    # A new sign-in starts unverified: the code is asked again (a new one: the first cannot be replayed).
    again = _client(tenant_a, admin, in_tenant)
    asked = again.get("/admin/access/apikey/")
    assert asked.status_code == 302 and asked["Location"].startswith("/account/mfa/verify/")
    assert again.post("/account/mfa/verify/", {"token": _code(device, drift=1), "next": "/admin/"}).status_code == 302
    assert again.get("/admin/access/apikey/").status_code == 200
    # A code already used cannot be used again, not even from another session.
    third = _client(tenant_a, admin, in_tenant)
    assert third.post("/account/mfa/verify/", {"token": _code(device, drift=1)}).status_code == 400
    assert third.get("/admin/").status_code == 302
    with in_tenant(tenant_a):
        kinds = set(AuditEntry.objects.filter(user_id=admin.pk).values_list("event_type", flat=True))
    assert {"mfa_enrolled", "mfa_verified", "mfa_failed"} <= kinds


def test_wrong_codes_are_throttled(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    admin = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        device = TOTPDevice.objects.create(user=admin, name="app", confirmed=True)
    client = _client(tenant_a, admin, in_tenant)
    for _ in range(8):
        assert client.post("/account/mfa/verify/", {"token": "123456"}).status_code == 400
    # After eight failures the device is throttled for minutes: even the right code is refused now.
    assert client.post("/account/mfa/verify/", {"token": _code(device)}).status_code == 400
    assert client.get("/admin/").status_code == 302


def test_compliance_console_needs_the_second_factor(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    officer = make_user(tenant_a, "compliance_officer")
    client = _client(tenant_a, officer, in_tenant)
    page = client.get("/compliance/")
    assert page.status_code == 302 and page["Location"].startswith("/account/mfa/setup/")
    polled = client.get("/compliance/jobs.json")
    assert polled.status_code == 403 and "second factor" in polled.json()["error"]["message"]
    assert client.post("/compliance/verify/").status_code == 302  # to enrolment, not performed
    with in_tenant(tenant_a):
        assert not AuditEntry.objects.filter(event_type="audit_verified").exists()


def test_plain_users_and_tenants_that_opt_out_are_not_asked(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                            tenant_update: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    response = _client(tenant_a, user, in_tenant).get("/account/keys/")
    assert response.status_code == 200
    tenant_update(tenant_a, mfa_required_for_admins=False)
    admin = make_user(tenant_a, "admin", is_staff=True)
    assert _client(tenant_a, admin, in_tenant).get("/admin/").status_code == 200


def test_sso_sign_in_with_mfa_at_the_idp_counts(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                settings: Any) -> None:
    assert claims_prove_mfa({"amr": ["pwd", "otp"]}) and claims_prove_mfa({"amr": ["mfa"]})
    assert not claims_prove_mfa({"amr": ["pwd"]}) and not claims_prove_mfa({"acr": "urn:basic"})
    settings.ATRIUM_SSO_MFA_ACR_VALUES = ["urn:mfa"]
    assert claims_prove_mfa({"acr": "urn:mfa"})
    admin = make_user(tenant_a, "admin", is_staff=True)
    client = _client(tenant_a, admin, in_tenant)
    assert client.get("/admin/").status_code == 302
    session = client.session
    session[SSO_MFA_SESSION_KEY] = True  # what access.mfa.sso_mfa_remember stores after an amr=["mfa"] sign-in
    session.save()
    assert client.get("/admin/").status_code == 200


def test_an_administrator_removes_a_lost_device(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                tenant_update: Any) -> None:
    tenant_update(tenant_a, mfa_required_for_admins=False)
    user = make_user(tenant_a, "compliance_officer")
    admin = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        device = TOTPDevice.objects.create(user=user, name="lost phone", confirmed=True)
    client = _client(tenant_a, admin, in_tenant)
    listing = client.get("/admin/otp_totp/totpdevice/")
    assert listing.status_code == 200 and b"lost phone" in listing.content
    assert client.get("/admin/otp_totp/totpdevice/add/").status_code == 403
    removed = client.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    with in_tenant(tenant_a):
        assert not TOTPDevice.objects.filter(pk=device.pk).exists()
        assert AuditEntry.objects.filter(event_type="mfa_device_removed", user_id=admin.pk).exists()


def test_platform_staff_need_the_second_factor_too(public_client: Any) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    connection.set_schema_to_public()
    staff = get_user_model().objects.create_superuser("platform-mfa", "pm@example.com", "pw-Secret-123")
    public_client.force_login(staff)
    first = public_client.get("/admin/")
    assert first.status_code == 302 and first["Location"] == "/account/mfa/setup/?next=/admin/"
    page = public_client.get(first["Location"])
    assert page.status_code == 200 and b"<svg" in page.content
    device = TOTPDevice.objects.get(user=staff)  # in the public schema
    assert public_client.post("/account/mfa/setup/", {"token": _code(device), "next": "/admin/"}).status_code == 302
    assert public_client.get("/admin/").status_code == 200
    from audit.platform.models import PlatformAuditEntry

    assert PlatformAuditEntry.objects.filter(action="mfa_enrolled", target=f"user:{staff.pk}").exists()

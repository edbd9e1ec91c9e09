"""Invitations (access/invitations.py) at the service and admin level: one-time links, expiry, re-send, revoke,
roles limited to what the inviter may grant, and SSO invitees getting their roles at their first sign-in."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.django_db


def _token(message: Any) -> tuple[str, str]:
    match = re.search(r"/accounts/invitation/([0-9a-f-]+)/([A-Za-z0-9_-]+)/", message.body)
    assert match, message.body
    return match.group(1), match.group(2)


def _invite(tenant: Any, in_tenant: Any, capture: Any, inviter: Any, email: str, roles: list[str],
            staff: bool = False) -> Any:
    from django.contrib.auth.models import Group

    from access.invitations import invitation_create

    with in_tenant(tenant), capture(execute=True):
        return invitation_create(email=email, roles=list(Group.objects.filter(name__in=roles)), staff=staff,
                                 invited_by=inviter, base_url="http://alpha.localhost")


def test_a_link_works_once_and_a_resend_replaces_it(tenant_a: Any, in_tenant: Any, make_user: Any,
                                                    mailoutbox: Any, django_capture_on_commit_callbacks: Any,
                                                    client_a: Any) -> None:
    from django.contrib.auth import get_user_model

    from access.invitations import InvitationInvalid, invitation_accept, invitation_check, invitation_resend
    from access.models import Invitation
    from audit.models import AuditEntry

    admin = make_user(tenant_a, role="admin", is_staff=True)
    invitation = _invite(tenant_a, in_tenant, django_capture_on_commit_callbacks, admin, "Ann@Example.com",
                         ["power_user"], staff=True)
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["Ann@example.com"]
    assert "expires" not in mailoutbox[0].body or "until" in mailoutbox[0].body
    pk, first = _token(mailoutbox[0])
    with in_tenant(tenant_a):
        assert first not in Invitation.objects.get(pk=pk).token_hash  # only a keyed hash is stored
        with django_capture_on_commit_callbacks(execute=True):
            invitation_resend(invitation=invitation, by=admin, base_url="http://alpha.localhost")
    _, second = _token(mailoutbox[1])
    assert client_a.get(f"/accounts/invitation/{pk}/{first}/").status_code == 404
    page = client_a.get(f"/accounts/invitation/{pk}/{second}/")
    assert page.status_code == 200 and "Ann@example.com" in page.content.decode()
    with in_tenant(tenant_a):
        with pytest.raises(InvitationInvalid) as replaced:
            invitation_check(invitation_id=pk, token=first)
        assert replaced.value.reason == "unknown"
        user = invitation_accept(invitation_id=pk, token=second, password="A-fine-Password-42")
        assert user.username == "Ann@example.com" and user.is_staff and user.check_password("A-fine-Password-42")
        assert list(user.groups.values_list("name", flat=True)) == ["power_user"]
        with pytest.raises(InvitationInvalid) as spent:
            invitation_accept(invitation_id=pk, token=second, password="Another-Password-43")
        assert spent.value.reason == "accepted"
        assert get_user_model().objects.filter(username__iexact="ann@example.com").count() == 1
        events = list(AuditEntry.objects.filter(event_type__in=["invitation_create", "invitation_resend"])
                      .values_list("event_type", flat=True))
        assert {"invitation_create", "invitation_resend"} <= set(events)
        assert "Ann@example.com" not in str(list(AuditEntry.objects.values_list("metadata", flat=True)))
    assert client_a.get(f"/accounts/invitation/{pk}/{second}/").status_code == 410


def test_expired_and_revoked_links_are_refused_and_create_nothing(
        tenant_a: Any, in_tenant: Any, make_user: Any, mailoutbox: Any, django_capture_on_commit_callbacks: Any,
        client_a: Any) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from access.invitations import invitation_revoke
    from access.models import Invitation

    admin = make_user(tenant_a, role="admin", is_staff=True)
    late = _invite(tenant_a, in_tenant, django_capture_on_commit_callbacks, admin, "late@example.com", ["viewer"])
    gone = _invite(tenant_a, in_tenant, django_capture_on_commit_callbacks, admin, "gone@example.com", ["viewer"])
    (late_pk, late_token), (gone_pk, gone_token) = _token(mailoutbox[0]), _token(mailoutbox[1])
    with in_tenant(tenant_a):
        Invitation.objects.filter(pk=late.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert invitation_revoke(invitation=gone, by=admin) and not invitation_revoke(invitation=gone, by=admin)
    for pk, token, reason in ((late_pk, late_token, "expired"), (gone_pk, gone_token, "revoked")):
        form = {"password1": "A-fine-Password-42", "password2": "A-fine-Password-42"}
        response = client_a.post(f"/accounts/invitation/{pk}/{token}/", form)
        assert response.status_code == 410 and f'data-reason="{reason}"' in response.content.decode()
    with in_tenant(tenant_a):
        assert not get_user_model().objects.filter(username__in=["late@example.com", "gone@example.com"]).exists()


def test_the_inviter_grants_only_roles_it_could_grant_and_needs_the_right_to_add_members(
        tenant_a: Any, in_tenant: Any, make_user: Any, client_a: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    from access.models import Invitation

    limited = make_user(tenant_a, role="viewer", is_staff=True)
    with in_tenant(tenant_a):
        limited.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth",
                                                                codename__in=["add_user", "view_user"]))
        power, viewer = Group.objects.get(name="power_user"), Group.objects.get(name="viewer")
    with in_tenant(tenant_a):
        client_a.force_login(limited)
    page = client_a.get("/admin/access/invitation/add/").content.decode()
    assert "viewer" in page and "power_user" not in page
    refused = client_a.post("/admin/access/invitation/add/", {"email": "x@example.com", "roles": [str(power.pk)]})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    taken = client_a.post("/admin/access/invitation/add/", {"email": limited.email, "roles": [str(viewer.pk)]})
    assert "already uses this address" in taken.content.decode()
    with in_tenant(tenant_a):
        assert not Invitation.objects.filter(email="x@example.com").exists()
    member = make_user(tenant_a, role="basic_user", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(member)
    assert client_a.get("/admin/access/invitation/add/").status_code == 403


def test_an_sso_first_sign_in_with_the_verified_address_takes_the_invitation(
        tenant_a: Any, in_tenant: Any, make_user: Any, mailoutbox: Any,
        django_capture_on_commit_callbacks: Any) -> None:
    from access.models import Invitation, OIDCConfig
    from access.services import sso_user_resolve

    admin = make_user(tenant_a, role="admin", is_staff=True)
    _invite(tenant_a, in_tenant, django_capture_on_commit_callbacks, admin, "sso-new@example.com", ["power_user"])
    _invite(tenant_a, in_tenant, django_capture_on_commit_callbacks, admin, "unverified@example.com",
            ["power_user"])
    with in_tenant(tenant_a):
        OIDCConfig.objects.filter(pk=1).delete()
        config = OIDCConfig.objects.create(issuer="https://idp.example.com", client_id="c", groups_claim="groups")
        user = sso_user_resolve(config=config, claims={"iss": config.issuer, "sub": "s-1", "email_verified": True,
                                                       "email": "sso-new@example.com"})
        assert list(user.groups.values_list("name", flat=True)) == ["power_user"]
        assert Invitation.objects.get(email="sso-new@example.com").accepted_user_id == user.pk
        other = sso_user_resolve(config=config, claims={"iss": config.issuer, "sub": "s-2",
                                                        "email": "unverified@example.com"})
        assert not other.groups.exists()  # an address the IdP did not verify takes no invitation
        assert Invitation.objects.get(email="unverified@example.com").accepted_at is None


def test_an_administrator_sends_a_set_password_link_instead_of_typing_a_password(
        tenant_a: Any, in_tenant: Any, make_user: Any, client_a: Any, mailoutbox: Any,
        django_capture_on_commit_callbacks: Any) -> None:
    admin = make_user(tenant_a, role="admin", is_staff=True)
    member = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        client_a.force_login(admin)
    page = client_a.get(f"/admin/auth/user/{member.pk}/password/").content.decode()
    assert 'id="send-password-link"' in page and "id_password1" not in page
    # A hand-made POST of a new password sets nothing: it only sends the link.
    with django_capture_on_commit_callbacks(execute=True):
        response = client_a.post(f"/admin/auth/user/{member.pk}/password/",
                                 {"password1": "Typed-By-Admin-1", "password2": "Typed-By-Admin-1"})
    assert response.status_code == 302
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [member.email]
    assert re.search(r"http://alpha\.localhost/accounts/reset/\S+/\S+/", mailoutbox[0].body)
    with in_tenant(tenant_a):
        member.refresh_from_db()
        assert member.check_password("pw-Secret-123") and not member.check_password("Typed-By-Admin-1")
    # One's own password: Django's form, as before.
    assert "id_password1" in client_a.get(f"/admin/auth/user/{admin.pk}/password/").content.decode()

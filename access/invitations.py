"""Invitations by e-mail: the administrator names an address and its roles, never a password.

The invitee receives a one-time link (the platform's first-administrator invitation uses the same path: a link on the
tenant's own host, mailed through Django's mail backend) and chooses a password there; or, when the tenant signs in
with SSO, simply signs in with its identity provider and the invitation's roles are applied to the new account
(access.services.sso_user_resolve, matched on the IdP's verified e-mail). A link works once, expires after
ATRIUM_INVITATION_VALID_DAYS, stops working when the invitation is revoked or re-sent (a re-send issues a new token),
and only a keyed hash of its token is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from access.audit_hooks import access_audit
from access.models import Invitation


class InvitationInvalid(Exception):
    """The link cannot be used; `reason` is one of unknown, accepted, revoked, expired, and `message` says so."""

    MESSAGES = {
        "unknown": "This invitation link is not valid. Ask your administrator for a new invitation.",
        "accepted": "This invitation was already accepted. Sign in with the password you chose.",
        "revoked": "This invitation was withdrawn by your administrator.",
        "expired": "This invitation has expired. Ask your administrator to send it again.",
    }

    def __init__(self, reason: str) -> None:
        super().__init__(self.MESSAGES[reason])
        self.reason = reason
        self.message = self.MESSAGES[reason]


class InvitationRefused(ValueError):
    """The invitation cannot be created or re-sent; the message is for the administrator's form."""


def _token_hash(token: str) -> str:
    key = hmac.new(settings.SECRET_KEY.encode(), b"atrium-invitation-token", hashlib.sha256).digest()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def _validity() -> timedelta:
    # A Django setting (config/settings/base.py is at its size limit), 7 days by default.
    return timedelta(days=int(getattr(settings, "ATRIUM_INVITATION_VALID_DAYS", 7)))


def invitation_link(*, invitation: Invitation, token: str, base_url: str) -> str:
    path = reverse("invitation_accept", kwargs={"invitation_id": invitation.pk, "token": token})
    return f"{base_url.rstrip('/')}{path}"


def _mail(*, invitation: Invitation, token: str, base_url: str) -> None:
    from access.selectors import oidc_config_enabled

    tenant = getattr(connection, "tenant", None)
    name = getattr(tenant, "name", "") or "your organisation"
    link = invitation_link(invitation=invitation, token=token, base_url=base_url)
    until = timezone.localtime(invitation.expires_at).strftime("%d %B %Y, %H:%M %Z")
    lines = [f"You are invited to {name} on Atrium.", "",
             f"Choose your password here (the link works once, until {until}):", link, ""]
    sso = oidc_config_enabled()
    if sso is not None:
        lines += [f"Or simply sign in with {sso.display_name} at {base_url.rstrip('/')}/accounts/login/ "
                  f"using this address ({invitation.email}).", ""]
    lines.append("If you did not expect this invitation, ignore this message.")
    send_mail(subject=f"Your invitation to {name} on Atrium", message="\n".join(lines), from_email=None,
              recipient_list=[invitation.email])


def _send(*, invitation: Invitation, base_url: str) -> None:
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    invitation.token_hash = _token_hash(token)
    invitation.sent_at = now
    invitation.expires_at = now + _validity()
    invitation.save(update_fields=["token_hash", "sent_at", "expires_at"])
    # Mailed once the row is committed: a rolled-back invitation sends nothing.
    transaction.on_commit(lambda: _mail(invitation=invitation, token=token, base_url=base_url))


def invitation_create(*, email: str, roles: list[Group], staff: bool, invited_by: Any, base_url: str,
                      request: Any = None) -> Invitation:
    email = get_user_model().objects.normalize_email(email.strip())
    user_model = get_user_model()
    with transaction.atomic():
        if user_model.objects.filter(Q(username__iexact=email) | Q(email__iexact=email)).exists():
            raise InvitationRefused("Someone in this organisation already uses this address.")
        open_ones = Invitation.objects.select_for_update().filter(
            email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
        if open_ones.exists():
            raise InvitationRefused("This address already has an invitation waiting: re-send it from the list.")
        invitation = Invitation.objects.create(email=email, staff=staff, invited_by=invited_by,
                                               expires_at=timezone.now() + _validity(), token_hash="")
        invitation.roles.set(roles)
        _send(invitation=invitation, base_url=base_url)
        access_audit("invitation_create", user=invited_by, request=request,
                     metadata={"source": "admin", "invitation": str(invitation.pk), "staff": staff,
                               "roles": sorted(g.name for g in roles)})
    return invitation


def invitation_resend(*, invitation: Invitation, by: Any, base_url: str, request: Any = None) -> Invitation:
    """A new link with a new expiry; the previous link stops working."""
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at is not None or invitation.revoked_at is not None:
            raise InvitationRefused("Only invitations that are waiting or expired can be sent again.")
        _send(invitation=invitation, base_url=base_url)
        access_audit("invitation_resend", user=by, request=request,
                     metadata={"source": "admin", "invitation": str(invitation.pk)})
    return invitation


def invitation_revoke(*, invitation: Invitation, by: Any, request: Any = None) -> bool:
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at is not None or invitation.revoked_at is not None:
            return False
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        access_audit("invitation_revoke", user=by, request=request,
                     metadata={"source": "admin", "invitation": str(invitation.pk)})
    return True


def invitation_check(*, invitation_id: uuid.UUID | str, token: str, lock: bool = False) -> Invitation:
    """The invitation a link names, when the link may still be used; InvitationInvalid otherwise."""
    queryset = Invitation.objects.select_for_update() if lock else Invitation.objects.all()
    invitation = queryset.filter(pk=invitation_id).first()
    if invitation is None or not invitation.token_hash or not hmac.compare_digest(
            invitation.token_hash, _token_hash(token)):
        raise InvitationInvalid("unknown")
    status = invitation.status
    if status != Invitation.Status.PENDING:
        raise InvitationInvalid(str(status))
    return invitation


def _apply(*, invitation: Invitation, user: Any) -> None:
    user.groups.add(*invitation.roles.all())
    if invitation.staff and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    invitation.accepted_at = timezone.now()
    invitation.accepted_user = user
    invitation.save(update_fields=["accepted_at", "accepted_user"])
    access_audit("role_change", user=user, metadata={
        "source": "invitation", "invitation": str(invitation.pk), "created": True, "flags": {"is_staff": user.is_staff},
        "added": sorted(invitation.roles.values_list("name", flat=True))}, subject_id=user.pk)


def invitation_accept(*, invitation_id: uuid.UUID | str, token: str, password: str, request: Any = None) -> Any:
    """Create the invitee's account with the chosen password and the invitation's roles; the link is then spent."""
    with transaction.atomic():
        invitation = invitation_check(invitation_id=invitation_id, token=token, lock=True)
        user_model = get_user_model()
        if user_model.objects.filter(Q(username__iexact=invitation.email) | Q(email__iexact=invitation.email)).exists():
            raise InvitationInvalid("accepted")
        user = user_model.objects.create_user(username=invitation.email, email=invitation.email, password=password)
        _apply(invitation=invitation, user=user)
    return user


def invitation_apply_for_sso(*, user: Any, email: str, email_verified: bool) -> bool:
    """At an SSO user's first sign-in: the open invitation for its verified address gives it its roles."""
    if not email or not email_verified:
        return False
    invitation = (Invitation.objects.select_for_update()
                  .filter(email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True,
                          expires_at__gt=timezone.now()).order_by("-sent_at").first())
    if invitation is None:
        return False
    _apply(invitation=invitation, user=user)
    return True


def invitations_erase(subject_id: int, limit: int) -> dict[str, int]:
    """GDPR erasure: invitations accepted by, or addressed to, the subject."""
    user = get_user_model().objects.filter(pk=subject_id).only("email").first()
    query = Q(accepted_user_id=subject_id)
    if user is not None and user.email:
        query |= Q(email__iexact=user.email)
    ids = list(Invitation.objects.filter(query).values_list("pk", flat=True)[:limit])
    Invitation.objects.filter(pk__in=ids).delete()
    return {"invitations": len(ids)}


def member_password_link_send(*, user: Any, by: Any, base_url: str, request: Any = None) -> bool:
    """Mail an existing member a link to choose a new password (Django's reset token, on the tenant's host: the same
    link the platform mails a new tenant's first administrator). False when the member has no e-mail address."""
    from tenants.services import tenant_invite_link

    if not user.email:
        return False
    schema = str(getattr(connection, "schema_name", ""))
    link = tenant_invite_link(schema_name=schema, username=user.get_username(), base_url=base_url)
    tenant = getattr(connection, "tenant", None)
    name = getattr(tenant, "name", "") or "your organisation"
    hours = int(settings.PASSWORD_RESET_TIMEOUT // 3600)
    with transaction.atomic():
        access_audit("user_change", user=by, request=request,
                     metadata={"source": "admin", "password_link_sent": True}, subject_id=user.pk)
        transaction.on_commit(lambda: send_mail(
            subject=f"Choose a new password for {name} on Atrium",
            message=(f"An administrator of {name} sent you this link to choose a new password for your Atrium "
                     f"account ({user.get_username()}).\n\nThe link works once and expires in {hours} hours:\n"
                     f"{link}\n\nIf you did not expect this message, you can ignore it: your password is unchanged."),
            from_email=None, recipient_list=[user.email]))
    return True

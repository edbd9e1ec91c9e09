"""Second factor for privileged roles: TOTP (django-otp), or the IdP's own MFA for SSO sign-ins (amr/acr claims).

Who must: anyone who reaches the admin site (staff) or the compliance console (a compliance permission), when the
tenant's policy `mfa_required_for_admins` is on (the default); on the platform host, every staff user. Where: this
middleware, in front of /admin/ and /compliance/, sends an unverified session to enrolment (first time: a QR code and
the secret) or to verification, then back. django-otp throttles wrong codes per device. A session is verified once
per sign-in (django-otp keeps the device in the session; a new sign-in starts unverified).

SSO sign-ins: when the ID token's `amr` names a second factor (RFC 8176: mfa, otp, hwk, swk, sc, fpt, face, ...)
or its `acr` is one of ATRIUM_SSO_MFA_ACR_VALUES, the session counts as verified; otherwise the user enrols TOTP here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django_tenants.utils import get_public_schema_name

from config.http import error_body

SSO_MFA_SESSION_KEY = "atrium_sso_mfa"
SSO_MFA_REQUEST_ATTR = "_atrium_sso_mfa"
MFA_AMR = frozenset({"mfa", "otp", "hwk", "swk", "sc", "fpt", "face", "iris", "retina", "vbm"})
COMPLIANCE_PERMS = ("audit.view_audit", "audit.export_data", "audit.delete_data")
GUARDED_PREFIXES = ("/admin/", "/compliance/")
OPEN_PATHS = ("/admin/login/", "/admin/logout/")


def claims_prove_mfa(claims: dict[str, Any]) -> bool:
    amr = claims.get("amr")
    values = {str(v).lower() for v in amr} if isinstance(amr, list) else set()
    if values & MFA_AMR:
        return True
    acr = claims.get("acr")
    return isinstance(acr, str) and acr in set(settings.ATRIUM_SSO_MFA_ACR_VALUES)


def sso_mfa_remember(sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    """user_logged_in receiver: keep, for this session, whether the IdP said a second factor was used."""
    if request is not None and hasattr(request, "session"):
        request.session[SSO_MFA_SESSION_KEY] = bool(getattr(request, SSO_MFA_REQUEST_ATTR, False))


def mfa_required(request: HttpRequest, user: Any) -> bool:
    """Whether this user, on this host, must have a verified second factor for the guarded pages."""
    if not settings.ATRIUM_MFA_ENFORCED:
        return False
    if not (user.is_authenticated and (user.is_staff or any(user.has_perm(p) for p in COMPLIANCE_PERMS))):
        return False
    if getattr(connection, "schema_name", None) == get_public_schema_name():
        return bool(settings.ATRIUM_PLATFORM_MFA_REQUIRED and user.is_staff)
    tenant = getattr(request, "tenant", None)
    return bool(getattr(tenant, "mfa_required_for_admins", True))


def mfa_satisfied(request: HttpRequest, user: Any) -> bool:
    is_verified = getattr(user, "is_verified", None)
    if callable(is_verified) and is_verified():
        return True
    return bool(request.session.get(SSO_MFA_SESSION_KEY))


class MfaRequiredMiddleware:
    """After django-otp's OTPMiddleware: unverified privileged sessions go to enrolment or verification first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(GUARDED_PREFIXES) and not path.startswith(OPEN_PATHS):
            user: Any = request.user
            if mfa_required(request, user) and not mfa_satisfied(request, user):
                return self._send_to_mfa(request, user)
        return self.get_response(request)

    @staticmethod
    def _send_to_mfa(request: HttpRequest, user: Any) -> HttpResponse:
        from django_otp import user_has_device

        if request.path_info.endswith(".json"):
            return JsonResponse(error_body(403, "A second factor is required: open the page in a browser to confirm "
                                                "it."), status=403)
        target = "/account/mfa/verify/" if user_has_device(user) else "/account/mfa/setup/"
        return HttpResponseRedirect(f"{target}?next={quote(request.get_full_path())}")

"""WebAuthn passkeys as a second factor beside TOTP (django-otp-webauthn, which wraps py_webauthn).

A passkey is a django-otp device like a TOTP device, so access/mfa.py's rule (who must, where) is unchanged: a
session verified with either counts. What this module adds:

- **The relying party is the tenant host.** The RP ID of every ceremony is the host the request came to (a domain
  django-tenants resolved to this tenant; the platform host for platform staff) and the only origin accepted is that
  host's own origin. A passkey made on tenant A is bound by the authenticator to A's host: on tenant B's host the
  browser does not offer it, and an assertion made for A and replayed to B fails B's RP ID hash and origin checks
  (and B's schema does not hold A's credential at all: the credentials live in each tenant's schema).
- **Second factor only.** Passwordless sign-in is off (`OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False`): the user
  signs in first (password or SSO), then confirms with the passkey on /account/mfa/verify/.
- **Audited**: `mfa_enrolled`, `mfa_verified` and `mfa_failed` with `method: webauthn`, like TOTP's.
- **A lost passkey** is removed by a tenant administrator (tenant admin → *Passkeys*, audited as
  `mfa_device_removed`); see access/admin_lockout.py.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import split_domain_port
from django.urls import URLPattern, path
from django.views.i18n import JavaScriptCatalog
from django_otp_webauthn import exceptions as webauthn_errors
from django_otp_webauthn import views as webauthn_views
from django_otp_webauthn.helpers import WebAuthnHelper
from django_otp_webauthn.models import WebAuthnCredential


def rp_id(request: HttpRequest) -> str:
    """The relying party ID: the host name this request came to (no port), already checked by ALLOWED_HOSTS and
    resolved to this tenant by django-tenants."""
    domain, _port = split_domain_port(request.get_host())
    return domain


def rp_name(request: HttpRequest) -> str:
    tenant = getattr(request, "tenant", None)
    name = getattr(tenant, "name", "") if tenant is not None else ""
    return f"{name} (Atrium)" if name and getattr(tenant, "schema_name", "public") != "public" else "Atrium"


def origin(request: HttpRequest) -> str:
    """The one origin a ceremony may come from: this host, on the scheme this request used."""
    return f"{request.scheme}://{request.get_host()}".lower()


class TenantWebAuthnHelper(WebAuthnHelper):  # type: ignore[misc]  # django-otp-webauthn ships no types
    """py_webauthn's ceremonies with the tenant host as relying party and its origin as the only one accepted."""

    def get_relying_party_domain(self) -> str:
        return rp_id(self.request)

    def get_relying_party_name(self) -> str:
        return rp_name(self.request)

    def get_allowed_origins(self) -> list[str]:
        return [origin(self.request)]


def user_has_passkey(user: Any) -> bool:
    return bool(user.is_authenticated and WebAuthnCredential.objects.filter(user=user, confirmed=True).exists())


def _audit(request: HttpRequest, event: str, *, status: str = "success") -> None:
    from access.mfa_views import mfa_audit

    mfa_audit(request, event, method="webauthn", status=status)


class _Refusals:
    """The library answers refusals as {"detail", "code"} JSON with a 4xx; we keep that (the page's script reads
    it) and never let an unexpected error in a ceremony become a 500 page."""

    def handle_exception(self, exc: Exception) -> HttpResponse:
        if isinstance(exc, webauthn_errors.OTPWebAuthnApiError):
            return JsonResponse({"detail": str(exc), "code": exc.code}, status=exc.status_code)
        if isinstance(exc, (KeyError, TypeError, ValueError, AttributeError)):
            return JsonResponse({"detail": "The passkey response is malformed.", "code": "malformed_request"},
                                status=400)
        raise exc


class RegisterBegin(_Refusals, webauthn_views.BeginCredentialRegistrationView):  # type: ignore[misc]  # untyped base
    pass


class RegisterComplete(_Refusals, webauthn_views.CompleteCredentialRegistrationView):  # type: ignore[misc]  # untyped base
    def post(self, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().post(*args, **kwargs)
        _audit(self.request, "mfa_enrolled")
        return response


class VerifyBegin(_Refusals, webauthn_views.BeginCredentialAuthenticationView):  # type: ignore[misc]  # untyped base
    def check_can_authenticate(self) -> None:
        if not self.request.user.is_authenticated:  # second factor only: sign in first
            raise webauthn_errors.NotAuthenticated()
        super().check_can_authenticate()


class VerifyComplete(_Refusals, webauthn_views.CompleteCredentialAuthenticationView):  # type: ignore[misc]  # untyped base
    def check_can_authenticate(self) -> None:
        if not self.request.user.is_authenticated:
            raise webauthn_errors.NotAuthenticated()
        super().check_can_authenticate()

    def handle_exception(self, exc: Exception) -> HttpResponse:
        response = super().handle_exception(exc)
        if self.request.user.is_authenticated:
            _audit(self.request, "mfa_failed", status="error")
        return response

    def post(self, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().post(*args, **kwargs)
        _audit(self.request, "mfa_verified")
        return response


# Mounted under account/mfa/passkey/ on tenant hosts and the platform host; the namespace is the library's, whose
# template tags reverse these names.
app_name = "otp_webauthn"
urlpatterns: list[URLPattern] = [
    path("registration/begin/", RegisterBegin.as_view(), name="credential-registration-begin"),
    path("registration/complete/", RegisterComplete.as_view(), name="credential-registration-complete"),
    path("authentication/begin/", VerifyBegin.as_view(), name="credential-authentication-begin"),
    path("authentication/complete/", VerifyComplete.as_view(), name="credential-authentication-complete"),
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]), name="js-i18n-catalog"),
]

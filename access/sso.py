"""Browser SSO per tenant: mozilla-django-oidc's backend and views, configured from the current tenant.

mozilla-django-oidc reads static settings (get_settings) when its classes are built. Here each
request loads the tenant's OIDCConfig and the IdP's (cached) discovery document instead, so every
tenant signs in against its own IdP with its own client, always with PKCE, state and nonce.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.views import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from access.errors import AccessError
from access.mfa import SSO_MFA_REQUEST_ATTR, claims_prove_mfa
from access.models import OIDCConfig
from access.oidc import OIDCError, TokenRejected, discovery, token_validate
from access.selectors import oidc_config_enabled
from access.services import LoginRefused, sso_user_resolve

logger = logging.getLogger(__name__)

# Where a refused sign-in's explanation travels from the backend to the callback view.
FAILURE_ATTR = "_atrium_sso_failure"


def _fail(request: HttpRequest, message: str, reason: str) -> None:
    setattr(request, FAILURE_ATTR, (message, reason))


def sso_failure_page(request: HttpRequest, message: str, *, reason: str, status: int = 403) -> HttpResponse:
    return render(request, "access/sso_failed.html",
                  {"message": message, "reason": reason, "tenant": getattr(connection, "tenant", None)},
                  status=status)


class TenantOIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]  # mozilla-django-oidc ships no types
    """Authenticates the OIDC callback against the current tenant's IdP."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The parent reads static OIDC_* settings here; ours come from the tenant in authenticate().
        self._tenant_settings: dict[str, Any] = {}
        self.config: OIDCConfig | None = None

    @property
    def UserModel(self) -> Any:
        # Looked up when used (an OIDC login), not at construction: Django builds every backend anew for each
        # user.has_perm, several times per API call.
        return get_user_model()

    def get_settings(self, attr: str, *args: Any) -> Any:
        if attr in self._tenant_settings:
            return self._tenant_settings[attr]
        return import_from_settings(attr, *args)

    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        # Only the OIDC callback passes nonce/code_verifier; password logins must not reach the IdP.
        if request is None or "nonce" not in kwargs or "code_verifier" not in kwargs:
            return None
        config = oidc_config_enabled()
        if config is None:
            return None
        try:
            meta = discovery(config)
        except OIDCError as exc:
            _fail(request, f"The identity provider could not be reached: {exc.message}", "idp_unreachable")
            return None
        self.config = config
        self.OIDC_OP_TOKEN_ENDPOINT = meta["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = meta.get("userinfo_endpoint")
        self.OIDC_OP_JWKS_ENDPOINT = meta["jwks_uri"]
        self.OIDC_RP_CLIENT_ID = config.client_id
        self.OIDC_RP_CLIENT_SECRET = config.client_secret
        self.OIDC_RP_SIGN_ALGO = "RS256"
        self.OIDC_RP_IDP_SIGN_KEY = None
        self._tenant_settings = {
            "OIDC_VERIFY_SSL": config.verify_ssl,
            "OIDC_TIMEOUT": settings.ATRIUM_OIDC_HTTP_TIMEOUT_S,
            "OIDC_PROXY": None,
            "OIDC_STORE_ID_TOKEN": True,  # the id_token_hint for RP-initiated logout
            "OIDC_STORE_ACCESS_TOKEN": False,
            "OIDC_USE_NONCE": True,
            "OIDC_TOKEN_USE_BASIC_AUTH": False,
            "OIDC_AUTHENTICATION_CALLBACK_URL": "oidc_authentication_callback",
        }
        try:
            return super().authenticate(request, **kwargs)
        except LoginRefused as exc:
            _fail(request, exc.message, exc.reason)
        except TokenRejected as exc:
            _fail(request, f"The identity provider's answer was rejected: {exc.message}.", exc.reason)
        except AccessError as exc:
            _fail(request, exc.message, "idp_error")
        except requests.RequestException as exc:
            # Token endpoint refused the code (or was unreachable); its body may hold secrets, so not shown.
            status = getattr(getattr(exc, "response", None), "status_code", None)
            logger.warning("OIDC token exchange failed for issuer %s: HTTP %s", config.issuer, status)
            _fail(request, "The identity provider refused to complete the sign-in.", "token_exchange")
        return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        assert self.config is not None
        return token_validate(self.config, token, audiences=[self.config.client_id], nonce=kwargs.get("nonce"))

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        """ID token claims, completed by the userinfo endpoint when the IdP has one.

        iss and sub always come from the verified ID token; userinfo for another subject is refused.
        """
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT and access_token:
            info = super().get_userinfo(access_token, id_token, payload)
            if info.get("sub") != payload.get("sub"):
                raise TokenRejected("userinfo subject differs from the ID token's", reason="userinfo_subject")
            claims.update({k: v for k, v in info.items() if k not in ("iss", "aud", "exp", "iat", "nbf")})
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        assert self.config is not None
        claims = self.get_userinfo(access_token, id_token, payload)
        # Whether the IdP used a second factor, from the verified ID token (not userinfo): access/mfa.py.
        setattr(self.request, SSO_MFA_REQUEST_ATTR, claims_prove_mfa(payload))
        return sso_user_resolve(config=self.config, claims=claims, request=self.request)

    def get_user(self, user_id: Any) -> Any:
        # ModelBackend's version also refuses inactive users on every request.
        return ModelBackend.get_user(self, user_id)


class TenantOIDCAuthenticationRequestView(OIDCAuthenticationRequestView):  # type: ignore[misc]  # untyped base
    """Redirects to the tenant's IdP with state, nonce and a PKCE S256 challenge."""

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)
        self._tenant_settings: dict[str, Any] = {}

    def get_settings(self, attr: str, *args: Any) -> Any:
        if attr in self._tenant_settings:
            return self._tenant_settings[attr]
        return import_from_settings(attr, *args)

    def get(self, request: HttpRequest) -> HttpResponse:
        config = oidc_config_enabled()
        if config is None:
            return sso_failure_page(request, "Single sign-on is not configured for this organisation.",
                                    reason="sso_disabled", status=404)
        try:
            meta = discovery(config)
        except OIDCError as exc:
            return sso_failure_page(request, f"The identity provider could not be reached: {exc.message}",
                                    reason="idp_unreachable", status=502)
        self.OIDC_OP_AUTH_ENDPOINT = meta["authorization_endpoint"]
        self.OIDC_RP_CLIENT_ID = config.client_id
        self._tenant_settings = {
            "OIDC_RP_SCOPES": config.scopes,
            "OIDC_USE_PKCE": True,
            "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
            "OIDC_USE_NONCE": True,
            "OIDC_AUTHENTICATION_CALLBACK_URL": "oidc_authentication_callback",
            "OIDC_AUTH_REQUEST_EXTRA_PARAMS": {},
        }
        response: HttpResponse = super().get(request)
        return response


class TenantOIDCCallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]  # untyped base
    """Finishes the sign-in; a refusal renders a page that says why instead of a bare redirect."""

    def get(self, request: HttpRequest) -> HttpResponse:
        from access.sso_test import sso_test_finish, sso_test_pending

        if sso_test_pending(request):
            # An administrator's test sign-in (access/sso_test.py), recognised by its state: nobody is signed in.
            user: Any = request.user
            if not (user.is_authenticated and user.is_staff and user.has_perm("access.change_oidcconfig")):
                return sso_failure_page(request, "Only an administrator of this organisation can run a test "
                                                 "sign-in.", reason="sso_test_forbidden", status=403)
            result = sso_test_finish(request)
            return render(request, "access/sso_test_result.html",
                          {"result": result, "tenant": getattr(connection, "tenant", None)},
                          status=200 if result.ok else 400)
        if oidc_config_enabled() is None:
            return sso_failure_page(request, "Single sign-on is not configured for this organisation.",
                                    reason="sso_disabled", status=404)
        try:
            response: HttpResponse = super().get(request)
            return response
        except SuspiciousOperation:
            # Unknown or replayed state: the sign-in did not start here or was already used.
            return sso_failure_page(request, "This sign-in link is no longer valid. Please start again.",
                                    reason="state", status=400)

    @property
    def success_url(self) -> str:
        next_url = self.request.session.get("oidc_login_next")
        return str(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))

    def login_failure(self) -> HttpResponse:
        if self.request.GET.get("error"):
            message, reason = "The identity provider did not complete the sign-in.", "idp_error"
        else:
            message, reason = getattr(self.request, FAILURE_ATTR, None) or (
                "The sign-in could not be completed. Please start again.", "failed")
        return sso_failure_page(self.request, message, reason=reason, status=403)


class TenantOIDCLogoutView(View):
    """Ends the local session, then the IdP session when the user signed in through SSO."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        target = resolve_url(settings.LOGOUT_REDIRECT_URL)
        id_token = request.session.get("oidc_id_token")
        config = oidc_config_enabled()
        if id_token and config is not None:
            endpoint = config.end_session_endpoint
            if not endpoint:
                try:
                    endpoint = discovery(config).get("end_session_endpoint") or ""
                except OIDCError:
                    endpoint = ""  # the local session still ends
            if endpoint:
                query = urlencode({"id_token_hint": id_token, "client_id": config.client_id,
                                   "post_logout_redirect_uri": request.build_absolute_uri(target)})
                target = f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
        auth.logout(request)
        return HttpResponseRedirect(target)

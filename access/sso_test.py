"""The SSO form's "test sign-in": a real OpenID Connect round trip against the configured IdP before SSO is enabled.

The administrator opens the test (a new tab) from the SSO configuration page; Atrium sends that browser to the IdP
with state, nonce and a PKCE S256 challenge, exactly like a member's sign-in, on the callback URL that the page tells
the administrator to register (so the test also proves the registration). The callback recognises the test by its
state in the administrator's session, exchanges the code, validates the ID token (signature, issuer, audience, nonce)
and shows which claims arrived, what e-mail domain and roles they would give, and nothing else: nobody is signed in,
no account is created. A success is remembered with a fingerprint of the settings it exercised; the form refuses to
enable SSO until a test with the current settings succeeded (access/admin.py). Starting a test is rate-limited per
tenant and every IdP URL goes through config.outbound's rules.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from mozilla_django_oidc.utils import generate_code_challenge

from access.audit_hooks import access_audit
from access.models import OIDCConfig
from access.oidc import OIDCError, TokenRejected, claim_values, discovery, token_validate
from config.outbound import OutboundRefused, outbound_check
from config.redis import redis_client

logger = logging.getLogger(__name__)

SESSION_KEY = "atrium_sso_test"
# Claims worth showing the administrator; tokens themselves never are.
SHOWN_CLAIMS_LIMIT = 40


class SsoTestRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class SsoTestResult:
    ok: bool
    message: str
    claims: list[tuple[str, str]] = field(default_factory=list)
    email: str = ""
    email_admitted: bool | None = None
    roles: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def callback_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("oidc_authentication_callback"))


def sso_test_slot() -> bool:
    key = f"atrium:oidc-signin-test:{getattr(connection, 'schema_name', 'public')}"
    return bool(redis_client().set(key, b"1", nx=True, ex=max(1, int(settings.ATRIUM_OIDC_TEST_INTERVAL_S))))


def sso_test_start(request: HttpRequest, config: OIDCConfig) -> str:
    """The IdP authorization URL for a test sign-in; the test's state is kept in the administrator's session."""
    if not sso_test_slot():
        raise SsoTestRefused(f"Test sign-ins are limited to one every {settings.ATRIUM_OIDC_TEST_INTERVAL_S} "
                             f"seconds; try again shortly.")
    try:
        meta = discovery(config, refresh=True)
    except OIDCError as exc:
        raise SsoTestRefused(f"The identity provider cannot be used: {exc.message}") from exc
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    request.session[SESSION_KEY] = {"state": state, "nonce": nonce, "verifier": verifier,
                                    "fingerprint": config.connection_fingerprint(),
                                    "started": timezone.now().timestamp()}
    query = urlencode({"response_type": "code", "client_id": config.client_id, "redirect_uri": callback_url(request),
                       "scope": config.scopes, "state": state, "nonce": nonce,
                       "code_challenge": generate_code_challenge(verifier, "S256"),
                       "code_challenge_method": "S256"})
    endpoint = str(meta["authorization_endpoint"])
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def sso_test_pending(request: HttpRequest) -> bool:
    """This callback belongs to a test sign-in started in this session (its state matches)."""
    test = request.session.get(SESSION_KEY)
    return bool(isinstance(test, dict) and test.get("state") and request.GET.get("state") == test["state"])


def _post_token(config: OIDCConfig, endpoint: str, data: dict[str, str]) -> dict[str, Any]:
    try:
        outbound_check(endpoint)
    except OutboundRefused as exc:
        raise SsoTestRefused(f"The token endpoint is refused: {exc.message}") from exc
    try:
        response = requests.post(endpoint, data=data, verify=config.verify_ssl, allow_redirects=False,
                                 timeout=settings.ATRIUM_OIDC_HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise SsoTestRefused("The token endpoint could not be reached.") from exc
    if response.status_code != 200:
        # The body may carry secrets or internals: only the status is shown.
        raise SsoTestRefused(f"The identity provider refused the code exchange (HTTP {response.status_code}); "
                             f"check the client id and secret.")
    try:
        body = response.json()
    except ValueError as exc:
        raise SsoTestRefused("The token endpoint did not answer JSON.") from exc
    if not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
        raise SsoTestRefused("The identity provider returned no ID token (is the 'openid' scope requested?).")
    return body


def _userinfo(config: OIDCConfig, endpoint: str | None, access_token: str | None) -> dict[str, Any]:
    if not endpoint or not access_token:
        return {}
    try:
        outbound_check(endpoint)
        response = requests.get(endpoint, headers={"Authorization": f"Bearer {access_token}"},
                                verify=config.verify_ssl, allow_redirects=False,
                                timeout=settings.ATRIUM_OIDC_HTTP_TIMEOUT_S)
        info = response.json() if response.status_code == 200 else {}
    except (OutboundRefused, requests.RequestException, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _shown(value: Any) -> str:
    text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def _evaluate(config: OIDCConfig, claims: dict[str, Any]) -> SsoTestResult:
    email = str(claims.get("email") or "")
    domains = config.email_domains
    admitted: bool | None = None
    if email:
        admitted = (not domains or email.rsplit("@", 1)[-1].lower() in domains) and \
            claims.get("email_verified") is not False
    groups = claim_values(claims, config.groups_claim)
    roles = sorted({m.group.name for m in config.group_mappings.select_related("group") if m.claim_value in groups})
    hidden = {"nonce", "at_hash", "c_hash", "sid"}
    shown = [(k, _shown(v)) for k, v in sorted(claims.items()) if k not in hidden][:SHOWN_CLAIMS_LIMIT]
    return SsoTestResult(ok=True, message="The test sign-in worked: the identity provider authenticated you and "
                                          "Atrium validated its ID token.",
                         claims=shown, email=email, email_admitted=admitted, roles=roles, groups=groups)


def sso_test_finish(request: HttpRequest) -> SsoTestResult:
    """Complete the test started in this session; records a success on the configuration."""
    test = request.session.pop(SESSION_KEY, None) or {}
    config = OIDCConfig.objects.filter(pk=1).first()
    try:
        if config is None:
            raise SsoTestRefused("The SSO configuration was deleted during the test.")
        if request.GET.get("error"):
            raise SsoTestRefused(f"The identity provider did not complete the sign-in "
                                 f"({_shown(request.GET.get('error'))[:60]}).")
        code = request.GET.get("code")
        if not code:
            raise SsoTestRefused("The identity provider sent no authorization code.")
        if test.get("fingerprint") != config.connection_fingerprint():
            raise SsoTestRefused("The settings changed during the test; start it again.")
        try:
            meta = discovery(config)
            tokens = _post_token(config, str(meta["token_endpoint"]), {
                "grant_type": "authorization_code", "code": code, "redirect_uri": callback_url(request),
                "client_id": config.client_id, "client_secret": str(config.client_secret or ""),
                "code_verifier": str(test.get("verifier") or "")})
            claims = token_validate(config, tokens["id_token"], audiences=[config.client_id],
                                    nonce=str(test.get("nonce") or ""))
        except TokenRejected as exc:
            raise SsoTestRefused(f"The ID token was rejected: {exc.message}.") from exc
        except OIDCError as exc:
            raise SsoTestRefused(f"The identity provider cannot be used: {exc.message}") from exc
        info = _userinfo(config, meta.get("userinfo_endpoint"), tokens.get("access_token"))
        if info.get("sub") == claims.get("sub"):
            claims.update({k: v for k, v in info.items() if k not in ("iss", "aud", "exp", "iat", "nbf")})
        result = _evaluate(config, claims)
    except SsoTestRefused as exc:
        with transaction.atomic():
            access_audit("sso_test", user=request.user, request=request, status="failure",
                         metadata={"source": "admin"}, error=exc.message[:200])
        return SsoTestResult(ok=False, message=exc.message)
    with transaction.atomic():
        OIDCConfig.objects.filter(pk=config.pk).update(tested_at=timezone.now(),
                                                       tested_fingerprint=test["fingerprint"])
        access_audit("sso_test", user=request.user, request=request,
                     metadata={"source": "admin", "roles": result.roles, "email_admitted": result.email_admitted})
    return result

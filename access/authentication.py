"""API authentication: tenant IdP bearer JWTs and Atrium API keys.

`authenticate_api_request` is the one function behind both the DRF classes (the chat API) and the
Anthropic-compatible /v1/ views, which render their own error shape. A key is recognised by its
`atr_` prefix, both in `x-api-key` (what the Anthropic SDK sends) and in `Authorization: Bearer`;
any other bearer value is treated as a JWT from the tenant's IdP.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from access.errors import AuthenticationFailed
from access.oidc import TokenRejected, token_validate
from access.selectors import oidc_config_enabled
from access.services import (
    API_KEY_PREFIX,
    LoginRefused,
    api_key_user,
    sso_user_resolve,
    user_from_rows,
    user_rows,
)
from config import thread_locals
from config.tenant_cache import TenantCache

logger = logging.getLogger(__name__)


class AuthInfo(NamedTuple):
    """How an API request authenticated; handed to the gateway for audit metadata. (Immutable; a NamedTuple
    because one is built per API call and a frozen dataclass costs several times as much to build.)"""

    method: str  # "api_key" or "jwt"
    tenant: str
    api_key_id: str | None = None
    api_key_prefix: str | None = None
    issuer: str | None = None
    subject: str | None = None
    reason: str | None = None


def _tenant_label() -> str:
    tenant = getattr(connection, "tenant", None)
    return str(getattr(tenant, "schema_name", "public"))


def _credentials(request: Any) -> tuple[str, str] | None:
    """("api_key" | "jwt", value) from the request headers, or None when it carries none."""
    meta = request.META
    api_key = meta.get("HTTP_X_API_KEY", "").strip()
    if api_key:
        return "api_key", api_key
    header = meta.get("HTTP_AUTHORIZATION", "").strip()
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    if not value:
        raise AuthenticationFailed(f"empty bearer credential (tenant {_tenant_label()})")
    return ("api_key" if value.startswith(API_KEY_PREFIX) else "jwt"), value


def _tenant_check(label: str, tenant: Any) -> None:
    if tenant is None or getattr(tenant, "schema_name", "public") == "public":
        raise AuthenticationFailed("API credentials are only accepted on an organisation's domain")
    if not getattr(tenant, "is_active", True):
        raise AuthenticationFailed(f"organisation {label} is deactivated")


def _authenticate_api_key(raw: str, label: str, schema: str) -> tuple[Any, AuthInfo]:
    user, key_id, prefix = api_key_user(raw_key=raw, tenant_label=label, schema=schema)
    return user, AuthInfo(method="api_key", tenant=label, api_key_id=key_id, api_key_prefix=prefix)


# A verified bearer token's user, per schema and token digest: (user row, the user's permissions, exp, nbf, iss,
# sub). The signature and claims are checked once per token; the entry is emptied by PostgreSQL when the user,
# their roles or permissions, their IdP identity or the tenant's SSO configuration change (config/tenant_cache.py;
# access migrations 0003 and 0008), and never served past the token's exp.
BearerRows = tuple[dict[str, Any], frozenset[str], float, float | None, str, str]
_bearer_cache: TenantCache[BearerRows] = TenantCache("bearer_tokens")


def _bearer_rows(token: str, label: str) -> BearerRows:
    """Verify `token` against the tenant's IdP and resolve its user (created and roles synced on first sight);
    raises AuthenticationFailed saying why not."""
    config = oidc_config_enabled()
    if config is None:
        raise AuthenticationFailed(f"bearer tokens are not accepted: SSO is not configured (tenant {label})")
    try:
        claims = token_validate(config, token, audiences=config.audiences)
        user = sso_user_resolve(config=config, claims=claims, record_login=False)
    except TokenRejected as exc:
        logger.info("bearer token rejected for tenant %s: %s", label, exc.reason)
        raise AuthenticationFailed(f"{exc.message} (tenant {label})") from exc
    except LoginRefused as exc:
        raise AuthenticationFailed(f"{exc.message} (tenant {label})") from exc
    except AuthenticationFailed as exc:
        raise AuthenticationFailed(f"{exc.message} (tenant {label})") from exc
    user_row, permissions = user_rows(user.pk)
    nbf = claims.get("nbf")
    return (user_row, permissions, float(claims["exp"]), float(nbf) if isinstance(nbf, int | float) else None,
            str(claims["iss"]), str(claims["sub"]))


def _authenticate_jwt(token: str, label: str, schema: str) -> tuple[Any, AuthInfo]:
    digest = hashlib.sha256(token.encode()).hexdigest()
    rows = _bearer_cache.get_or_load(schema, digest, lambda: _bearer_rows(token, label))
    if rows is None:  # _bearer_rows answers or raises
        raise AuthenticationFailed(f"bearer token refused (tenant {label})")
    user_row, permissions, exp, nbf, issuer, subject = rows
    # A cached token is still checked in time on every call (its signature and claims were checked once).
    now, leeway = time.time(), float(settings.ATRIUM_JWT_LEEWAY_S)
    if now >= exp + leeway:
        raise AuthenticationFailed(f"token expired (tenant {label})")
    if nbf is not None and now < nbf - leeway:
        raise AuthenticationFailed(f"token not yet valid (nbf/iat in the future) (tenant {label})")
    user = user_from_rows(user_row, permissions)
    if not user.is_active:
        raise AuthenticationFailed(f"This account is deactivated in this organisation. (tenant {label})")
    return user, AuthInfo(method="jwt", tenant=label, issuer=issuer, subject=subject)


def authenticate_api_request(request: Any) -> tuple[Any, AuthInfo]:
    """The user behind an API request's key or bearer token; raises access.errors.AuthenticationFailed.

    Works on a Django HttpRequest or a DRF Request. The caller checks permissions on the returned user; an API
    key's user comes with them from a per-process cache that PostgreSQL empties when a key, a user, a role or a
    permission changes (access.services._live_key_rows), so an edit in the admin applies at once.
    """
    # The request's connection, looked up once: every attribute read through django.db.connection is a lookup in
    # asgiref's context-local storage (a microsecond each; this path made four), and `connections[alias]` is one
    # too; read here from this thread's connections (config.thread_locals), as the tenant middleware does.
    db: Any = thread_locals.get(connections._connections, DEFAULT_DB_ALIAS)  # type: ignore[attr-defined]
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]
    tenant = getattr(db, "tenant", None)
    label = str(getattr(tenant, "schema_name", "public"))
    found = _credentials(request)
    if found is None:
        raise AuthenticationFailed(
            f"no API credentials: send x-api-key or Authorization: Bearer (tenant {label})"
        )
    _tenant_check(label, tenant)
    kind, value = found
    schema = str(getattr(db, "schema_name", "public"))
    if kind == "api_key":
        return _authenticate_api_key(value, label, schema)
    return _authenticate_jwt(value, label, schema)


class CredentialsRejected(exceptions.APIException):
    """Presented credentials were refused: always 401 with WWW-Authenticate.

    DRF turns its own AuthenticationFailed into a 403 when the first authentication class
    (SessionAuthentication) has no WWW-Authenticate header; a rejected key or token is a 401.
    """

    status_code = 401
    default_code = "authentication_failed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.auth_header = f'Bearer realm="{_tenant_label()}"'


class _AtriumAuthentication(BaseAuthentication):
    kind = ""

    def authenticate(self, request: Request) -> tuple[Any, AuthInfo] | None:
        try:
            found = _credentials(request)
        except AuthenticationFailed as exc:
            raise CredentialsRejected(exc.message) from exc
        if found is None or found[0] != self.kind:
            return None  # not ours: let the next class try
        try:
            return authenticate_api_request(request)
        except AuthenticationFailed as exc:
            raise CredentialsRejected(exc.message) from exc

    def authenticate_header(self, request: Request) -> str:
        # A value here makes DRF answer 401 (with WWW-Authenticate) rather than 403.
        return f'Bearer realm="{_tenant_label()}"'


class ApiKeyAuthentication(_AtriumAuthentication):
    """`x-api-key: atr_…` or `Authorization: Bearer atr_…`."""

    kind = "api_key"


class JWTAuthentication(_AtriumAuthentication):
    """`Authorization: Bearer <JWT>` signed by the tenant's IdP (RS256/ES256, JWKS-verified)."""

    kind = "jwt"

"""Audit entries for sign-ins, password and SSO alike, from Django's login signals.

The signals fire inside the login request, so the entry carries the request's IP and user agent.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django_tenants.utils import get_public_schema_name

from access.audit_hooks import access_audit


def _in_tenant() -> bool:
    return getattr(connection, "schema_name", None) not in (None, get_public_schema_name())


def _method(backend: str | None, credentials: dict[str, Any] | None = None) -> str:
    if backend == "access.sso.TenantOIDCBackend" or (credentials and "code_verifier" in credentials):
        return "sso"
    return "password"


def login_succeeded_audit(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if not _in_tenant():
        return
    access_audit("login", user=user, request=request,
                 metadata={"method": _method(getattr(user, "backend", None))})


def login_failed_audit(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    if not _in_tenant():
        return
    from access.sso import FAILURE_ATTR

    method = _method(None, credentials)
    metadata: dict[str, Any] = {"method": method}
    attempted = str(credentials.get("username", ""))[:150] if method == "password" else None
    failure = getattr(request, FAILURE_ATTR, None) if request is not None else None
    if failure:
        metadata["reason"] = failure[1]
    access_audit("login_failed", request=request, status="error", metadata=metadata,
                 error=failure[0] if failure else "", attempted_username=attempted)

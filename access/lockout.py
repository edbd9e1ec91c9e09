"""Sign-in throttling and lockout (django-axes), per account and per client address, per tenant.

Axes is a tenant app (and a shared one, for the platform host's admin): its attempt table lives in each schema, so a
lockout in one organisation never locks the same username or address out of another. It guards every form that
authenticates with a request (/accounts/login/ and each admin site's /admin/login/); API keys and bearer tokens do
not sign in and are not counted. What this module adds: the backend that lets request-less authenticate() calls
through, the lockout page, the audit entry and the administrator's unlock.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_tenants.utils import get_public_schema_name


class LockoutBackend(AxesStandaloneBackend):  # type: ignore[misc]  # django-axes ships no types
    """Axes' check before the real backends. authenticate() without a request (a management command, the test
    client's login()) is not a sign-in form and cannot be throttled by address: let the next backend decide."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    """What a locked-out sign-in sees: why, for how long, and who can lift it. Never whether the account exists."""
    cool_off = get_cool_off(request)
    minutes = int(cool_off.total_seconds() // 60) if cool_off else None
    return render(request, "registration/locked.html", {"minutes": minutes},
                  status=int(settings.AXES_HTTP_RESPONSE_CODE))


def locked_out_audit(sender: Any, request: HttpRequest | None = None, username: str | None = None,
                     ip_address: str | None = None, **kwargs: Any) -> None:
    """A `login_locked` audit entry in the tenant's chain (axes' user_locked_out signal)."""
    if getattr(connection, "schema_name", None) in (None, get_public_schema_name()):
        return  # the platform host's admin: axes' own attempt log holds it
    from access.audit_hooks import access_audit

    with transaction.atomic():
        access_audit("login_locked", request=request, status="refused",
                     metadata={"limit": int(settings.AXES_FAILURE_LIMIT),
                               "cool_off_minutes": int(settings.ATRIUM_LOGIN_COOLOFF_MINUTES)},
                     attempted_username=(username or "")[:150] or None)


def lockout_clear(*, attempts: Any, by: Any, request: HttpRequest | None = None) -> int:
    """Unlock: delete the given axes AccessAttempt rows, audited (one entry per row)."""
    from django.contrib.auth import get_user_model

    from access.audit_hooks import access_audit

    count = 0
    in_tenant = getattr(connection, "schema_name", None) not in (None, get_public_schema_name())
    with transaction.atomic():
        for attempt in attempts:
            if in_tenant:
                account = get_user_model().objects.filter(username=attempt.username or "").only("pk").first()
                # The administrator is the actor; the unlocked account appears as its pseudonym only.
                access_audit("login_unlocked", user=by, request=request,
                             metadata={"failures": attempt.failures_since_start, "by_address": not attempt.username},
                             subject_id=account.pk if account else None)
            attempt.delete()
            count += 1
    return count

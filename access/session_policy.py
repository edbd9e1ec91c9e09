"""Browser sessions end after the tenant's idle timeout and absolute lifetime (Tenant.session_idle_minutes,
Tenant.session_max_hours).

Django's own session expiry is one global age, renewed only when the session is written; this middleware keeps two
timestamps in the session (sign-in and last use) and signs the user out when either limit passes. The last-use stamp
is written at most once a minute, so an active session costs no extra write per request. Django rotates the session
key at sign-in (login() cycles it) and drops a session whose password hash no longer matches (a password change) or
whose user is inactive (a deactivation); tests/security/test_sessions.py proves each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse

from config.http import error_body

SIGNED_IN_AT = "atrium_signed_in_at"
SEEN_AT = "atrium_seen_at"
_TOUCH_EVERY_S = 60


def session_started(sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    """user_logged_in receiver: the session's clock starts now."""
    if request is not None and hasattr(request, "session"):
        now = int(time.time())
        request.session[SIGNED_IN_AT] = now
        request.session[SEEN_AT] = now


def session_limits(request: HttpRequest) -> tuple[int, int]:
    """(idle seconds, absolute seconds) for this request's tenant; the platform defaults on the public host."""
    tenant = getattr(request, "tenant", None)
    idle = getattr(tenant, "session_idle_minutes", None) or settings.ATRIUM_SESSION_IDLE_MINUTES
    absolute = getattr(tenant, "session_max_hours", None) or settings.ATRIUM_SESSION_MAX_HOURS
    return int(idle) * 60, int(absolute) * 3600


class SessionPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.SESSION_COOKIE_NAME in request.COOKIES and request.user.is_authenticated:
            ended = self._check(request)
            if ended is not None:
                return ended
        return self.get_response(request)

    def _check(self, request: HttpRequest) -> HttpResponse | None:
        session = request.session
        now = int(time.time())
        signed_in = int(session.get(SIGNED_IN_AT) or now)
        seen = int(session.get(SEEN_AT) or now)
        idle, absolute = session_limits(request)
        if now - seen > idle or now - signed_in > absolute:
            logout(request)
            message = "Your session ended (inactivity or maximum session length); sign in again."
            if request.path_info.startswith("/api/"):
                return JsonResponse(error_body(401, message), status=401)
            return HttpResponseRedirect(f"{settings.LOGIN_URL}?next={quote(request.get_full_path())}")
        if SIGNED_IN_AT not in session:
            session[SIGNED_IN_AT] = signed_in  # a session from before this policy: its clock starts now
        if now - seen >= _TOUCH_EVERY_S or SEEN_AT not in session:
            session[SEEN_AT] = now
        return None

"""Who a request acts for, typed: every view's one way from `request.user` to the user model (shared
infrastructure: audit and inference views use it too, and config imports no app)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied


def request_user(request: Any) -> User:
    """The signed-in user of a request whose view requires authentication; PermissionDenied otherwise
    (never reached behind login_required or IsAuthenticated, but it keeps AnonymousUser out of the types)."""
    user = getattr(request, "user", None)
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("Sign in first.")
    return user

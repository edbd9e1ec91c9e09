"""config.users.request_user: the one narrowing from request.user to the user model."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from config.users import request_user


def test_request_user_returns_the_signed_in_user_and_refuses_anyone_else() -> None:
    request = RequestFactory().get("/")
    request.user = User(username="ada", pk=7)
    assert request_user(request) is request.user
    request.user = AnonymousUser()
    with pytest.raises(PermissionDenied):
        request_user(request)
    del request.user
    with pytest.raises(PermissionDenied):
        request_user(request)

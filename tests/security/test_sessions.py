"""Issue 14, "sign-in": 14-day sessions with no idle timeout. Now: the tenant's idle timeout and absolute lifetime,
the session key rotated at sign-in, and every session of a user ended by a password change or a deactivation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from access.session_policy import SEEN_AT, SIGNED_IN_AT

pytestmark = pytest.mark.django_db

PASSWORD = "pw-Secret-123"


def _signed_in(user: Any, ip: str = "192.0.2.1") -> Client:
    client = Client(HTTP_HOST="alpha.localhost", REMOTE_ADDR=ip)
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


def _age(client: Client, *, seen_ago: float = 0, signed_in_ago: float = 0) -> None:
    session = client.session
    now = time.time()
    session[SEEN_AT] = int(now - seen_ago)
    session[SIGNED_IN_AT] = int(now - signed_in_ago)
    session.save()


def _still_signed_in(client: Client) -> bool:
    response = client.get("/account/keys/")
    if response.status_code == 302:
        assert response["Location"].startswith(settings.LOGIN_URL)
        return False
    assert response.status_code == 200
    return True


def test_session_key_rotates_at_sign_in(tenant_a: Any, make_user: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    client = Client(HTTP_HOST="alpha.localhost")
    session = client.session
    session["planted"] = "by an attacker (session fixation)"
    session.save()
    before = session.session_key
    assert client.post("/accounts/login/", {"username": user.username, "password": PASSWORD}).status_code == 302
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after and after != before


def test_idle_timeout_default_30_minutes(tenant_a: Any, make_user: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    client = _signed_in(user)
    _age(client, seen_ago=29 * 60, signed_in_ago=29 * 60)
    assert _still_signed_in(client)  # and that use renews the idle clock
    _age(client, seen_ago=31 * 60, signed_in_ago=60 * 60)
    assert not _still_signed_in(client)
    assert not _still_signed_in(client)  # the session is gone, not only refused once


def test_absolute_lifetime_default_12_hours_however_active(tenant_a: Any, make_user: Any) -> None:
    client = _signed_in(make_user(tenant_a, "basic_user"))
    _age(client, seen_ago=5, signed_in_ago=11.9 * 3600)
    assert _still_signed_in(client)
    _age(client, seen_ago=5, signed_in_ago=12.1 * 3600)
    assert not _still_signed_in(client)


def test_the_tenant_sets_its_own_limits(tenant_a: Any, make_user: Any, tenant_update: Any) -> None:
    tenant_update(tenant_a, session_idle_minutes=5, session_max_hours=1)
    client = _signed_in(make_user(tenant_a, "basic_user"))
    _age(client, seen_ago=6 * 60, signed_in_ago=6 * 60)
    assert not _still_signed_in(client)
    client = _signed_in(make_user(tenant_a, "basic_user"))
    _age(client, seen_ago=60, signed_in_ago=61 * 60)
    assert not _still_signed_in(client)


def test_api_calls_on_an_expired_session_get_json_401(tenant_a: Any, make_user: Any) -> None:
    client = _signed_in(make_user(tenant_a, "basic_user"))
    _age(client, seen_ago=31 * 60)
    response = client.get("/api/access/me/")
    assert response.status_code == 401 and "session ended" in response.json()["error"]["message"]


def test_password_change_ends_every_session(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    laptop, phone = _signed_in(user, "192.0.2.10"), _signed_in(user, "192.0.2.11")
    assert _still_signed_in(laptop) and _still_signed_in(phone)
    with in_tenant(tenant_a):
        user.set_password("a-new-Secret-456")
        user.save()
    assert not _still_signed_in(laptop) and not _still_signed_in(phone)


def test_deactivation_ends_every_session(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    laptop, phone = _signed_in(user, "192.0.2.20"), _signed_in(user, "192.0.2.21")
    with in_tenant(tenant_a):
        user.is_active = False
        user.save()
    assert not _still_signed_in(laptop) and not _still_signed_in(phone)

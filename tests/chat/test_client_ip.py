"""The client IP in audit entries: X-Forwarded-For counts only when the direct peer is a configured trusted proxy.
Tried from the wrong side: a client that sends its own X-Forwarded-For straight to Atrium is recorded as itself."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, override_settings

from audit.models import AuditEntry
from config.client_ip import client_ip
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db
PROXIES = ["10.0.0.0/8", "fd00::/8"]


def _ip(remote: str, forwarded: str | None = None) -> str:
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, **extra))


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert _ip("198.51.100.7", "1.2.3.4") == "198.51.100.7"  # no proxies configured: never believed
    with override_settings(ATRIUM_TRUSTED_PROXIES=PROXIES):
        assert _ip("198.51.100.7", "1.2.3.4, 10.0.0.1") == "198.51.100.7"  # peer is not one of ours


def test_trusted_proxy_chain_is_read_from_the_right() -> None:
    with override_settings(ATRIUM_TRUSTED_PROXIES=PROXIES):
        # the client wrote "1.2.3.4" itself; our proxies appended what they saw
        assert _ip("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.1") == "203.0.113.9"
        assert _ip("10.0.0.2", "203.0.113.9") == "203.0.113.9"
        assert _ip("10.0.0.2", "[2001:db8::1]:443") == "2001:db8::1"
        assert _ip("fd00::2", "198.51.100.1:5555") == "198.51.100.1"
        assert _ip("10.0.0.2", "garbage, 10.0.0.3") == "10.0.0.3"  # the nearest address our proxies vouch for
        assert _ip("10.0.0.2") == "10.0.0.2"


def test_bad_proxy_setting_is_a_clear_error() -> None:
    with override_settings(ATRIUM_TRUSTED_PROXIES=["10.0.0.0/8", "not-a-network"]), \
            pytest.raises(ImproperlyConfigured, match="'not-a-network' is not an IP address or CIDR"):
        _ip("10.0.0.2", "1.2.3.4")


def _login(client: Any, username: str, password: str, **meta: str) -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, **meta)


def test_login_and_login_failed_record_the_true_address(tenant_a: Any, in_tenant: Any, make_user: Any,
                                                        client_a: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    _login(client_a, user.username, "wrong-password", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="1.2.3.4")
    response = _login(client_a, user.username, "pw-Secret-123", REMOTE_ADDR="198.51.100.8",
                      HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert response.status_code == 302
    with in_tenant(tenant_a):
        failed = AuditEntry.objects.filter(event_type="login_failed", user_id=user.pk).get()
        login = AuditEntry.objects.filter(event_type="login", user_id=user.pk).get()
    assert failed.ip == "198.51.100.7" and login.ip == "198.51.100.8"
    with override_settings(ATRIUM_TRUSTED_PROXIES=PROXIES):
        _login(client_a, user.username, "pw-Secret-123", REMOTE_ADDR="10.1.2.3",
               HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.50")
    with in_tenant(tenant_a):
        assert AuditEntry.objects.filter(event_type="login", user_id=user.pk).order_by("-seq").first().ip == (
            "203.0.113.50")


def test_model_call_records_the_true_address(sim: Any, tenant_a: Any, in_tenant: Any, make_user: Any,
                                             api_key_for: Any, client_a: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    key = api_key_for(tenant_a, user)
    response = post_messages(client_a, key, body("hi"), REMOTE_ADDR="198.51.100.9",
                             HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert response.status_code == 200, response.content
    with override_settings(ATRIUM_TRUSTED_PROXIES=PROXIES):
        assert post_messages(client_a, key, body("hi"), REMOTE_ADDR="10.9.9.9",
                             HTTP_X_FORWARDED_FOR="203.0.113.77").status_code == 200
    with in_tenant(tenant_a):
        calls = list(AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).order_by("seq"))
    assert [c.ip for c in calls] == ["198.51.100.9", "203.0.113.77"]


def test_remembered_answers_follow_the_trusted_proxies_and_long_headers_are_read_too() -> None:
    """client_ip remembers its answer per (peer, header, trusted proxies): a change of the setting changes it at
    once, and a header longer than what is remembered is read all the same."""
    assert _ip("10.0.0.2", "203.0.113.9") == "10.0.0.2"  # no proxies: the peer
    with override_settings(ATRIUM_TRUSTED_PROXIES=PROXIES):
        assert _ip("10.0.0.2", "203.0.113.9") == "203.0.113.9"
        long_header = ", ".join(["198.51.100.1"] * 60 + ["203.0.113.9", "10.0.0.1"])
        assert len(long_header) > 512
        assert _ip("10.0.0.2", long_header) == "203.0.113.9"
    assert _ip("10.0.0.2", "203.0.113.9") == "10.0.0.2"

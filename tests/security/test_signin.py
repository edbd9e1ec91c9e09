"""Issue 14, "sign-in": 50 wrong passwords for one user in 25 s were all answered and then the right one worked (also
on /admin/login/); all-digit passwords were accepted. Now: lockout per account and per address (django-axes, per
tenant schema), audited, with a clear message and an administrator's unlock; stronger password validation."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client

from audit.models import AuditEntry

pytestmark = pytest.mark.django_db

PASSWORD = "pw-Secret-123"


def _client(host: str = "alpha.localhost", ip: str = "198.51.100.7") -> Client:
    return Client(HTTP_HOST=host, REMOTE_ADDR=ip)


def _sign_in(client: Client, path: str, username: str, password: str) -> Any:
    return client.post(path, {"username": username, "password": password})


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_repeated_wrong_passwords_lock_the_account(path: str, tenant_a: Any, make_user: Any, in_tenant: Any,
                                                   settings: Any) -> None:
    user = make_user(tenant_a, "admin", username="target", is_staff=True)
    client = _client()
    answers = [_sign_in(client, path, "target", f"wrong-{i}").status_code for i in range(50)]
    limit = settings.AXES_FAILURE_LIMIT
    assert answers[:limit - 1] == [200] * (limit - 1)  # the form again, with its error
    assert set(answers[limit:]) == {429}, answers  # locked: refused without checking the password
    locked = _sign_in(client, path, "target", PASSWORD)
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content and b"administrator" in locked.content
    assert b"15 minutes" in locked.content
    # From another address, the account stays locked (per account, not only per address).
    assert _sign_in(_client(ip="203.0.113.99"), path, "target", PASSWORD).status_code == 429
    with in_tenant(tenant_a):
        entries = AuditEntry.objects.filter(event_type="login_locked")
        assert entries.count() >= 1 and entries.first().status == "refused"  # type: ignore[union-attr]
        assert entries.first().user_id == user.pk  # type: ignore[union-attr]
        assert not AuditEntry.objects.filter(event_type="login", user_id=user.pk).exists()


def test_one_address_trying_many_accounts_is_locked(tenant_a: Any, make_user: Any, settings: Any) -> None:
    victim = make_user(tenant_a, "basic_user", username="victim")
    client = _client(ip="192.0.2.50")
    for i in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, "/accounts/login/", f"guess-{i}", "nope")
    assert _sign_in(client, "/accounts/login/", victim.username, PASSWORD).status_code == 429
    # Another address is not affected, and signs the victim in.
    assert _sign_in(_client(ip="192.0.2.51"), "/accounts/login/", victim.username, PASSWORD).status_code == 302


def test_forwarded_for_from_an_untrusted_peer_does_not_escape_the_address_limit(tenant_a: Any, make_user: Any,
                                                                                settings: Any) -> None:
    make_user(tenant_a, "basic_user", username="someone")
    client = _client(ip="192.0.2.60")
    for i in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": f"g{i}", "password": "x"}, HTTP_X_FORWARDED_FOR=f"10.9.9.{i}")
    refused = client.post("/accounts/login/", {"username": "someone", "password": PASSWORD},
                          HTTP_X_FORWARDED_FOR="10.9.9.200")
    assert refused.status_code == 429


def test_lockout_is_per_tenant(tenant_a: Any, tenant_b: Any, make_user: Any, settings: Any) -> None:
    make_user(tenant_a, "basic_user", username="same-name")
    make_user(tenant_b, "basic_user", username="same-name")
    client_a = _client("alpha.localhost", ip="192.0.2.70")
    for i in range(settings.AXES_FAILURE_LIMIT + 1):
        _sign_in(client_a, "/accounts/login/", "same-name", f"bad{i}")
    assert _sign_in(client_a, "/accounts/login/", "same-name", PASSWORD).status_code == 429
    # Beta has its own attempts table: the same username (and address) signs in there.
    assert _sign_in(_client("beta.localhost", ip="192.0.2.70"), "/accounts/login/", "same-name",
                    PASSWORD).status_code == 302


def test_admin_unlocks_an_account_and_it_is_audited(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                    settings: Any) -> None:
    from axes.models import AccessAttempt

    make_user(tenant_a, "basic_user", username="forgetful")
    admin = make_user(tenant_a, "admin", username="the-admin", is_staff=True)
    client = _client(ip="192.0.2.80")
    for i in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, "/accounts/login/", "forgetful", f"bad{i}")
    assert _sign_in(client, "/accounts/login/", "forgetful", PASSWORD).status_code == 429
    staff = _client(ip="192.0.2.81")
    with in_tenant(tenant_a):
        staff.force_login(admin)
        ids = [str(pk) for pk in AccessAttempt.objects.values_list("pk", flat=True)]
    listing = staff.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and b"forgetful" in listing.content
    unlocked = staff.post("/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": ids})
    assert unlocked.status_code == 302
    assert _sign_in(client, "/accounts/login/", "forgetful", PASSWORD).status_code == 302
    with in_tenant(tenant_a):
        entries = AuditEntry.objects.filter(event_type="login_unlocked")
        assert entries.count() == len(ids)  # one per forgotten record (the account's and the address's)
        assert {e.user_id for e in entries} == {admin.pk}  # the administrator who unlocked
        assert any("subject" in e.metadata for e in entries)  # the account, as a pseudonym


def test_basic_user_cannot_see_or_unlock_lockouts(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    staff_without_admin = make_user(tenant_a, "basic_user", username="staffer", is_staff=True)
    client = _client()
    with in_tenant(tenant_a):
        client.force_login(staff_without_admin)
    assert client.get("/admin/axes/accessattempt/").status_code in (403, 404)


@pytest.mark.parametrize("password", ["12345678901234", "short-Pw1", "password1234"])
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValidationError):
        validate_password(password)


def test_a_long_mixed_password_is_accepted() -> None:
    validate_password("correct horse battery staple 7")

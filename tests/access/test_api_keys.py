"""API keys: shown once, stored as a keyed hash, accepted as x-api-key or Bearer, revocable, expiring,
scoped to one tenant and one user, last use recorded without a write per request."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

ME = "/api/access/me/"


@pytest.fixture
def key_for(in_tenant: Any) -> Any:
    from access.services import api_key_create

    def _create(tenant: Any, user: Any, **kwargs: Any) -> tuple[Any, str]:
        with in_tenant(tenant):
            return api_key_create(user=user, name=kwargs.pop("name", "test"), **kwargs)

    return _create


def test_key_shape_and_storage(tenant_a: Any, make_user: Any, key_for: Any, in_tenant: Any) -> None:
    from django.db import connection

    from access.models import ApiKey
    from access.services import api_key_hash

    user = make_user(tenant_a)
    key, raw = key_for(tenant_a, user)
    assert re.fullmatch(r"atr_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", raw)
    assert raw.split("_")[1] == key.prefix
    with in_tenant(tenant_a):
        stored = ApiKey.objects.get(pk=key.pk)
        assert stored.secret_hash == api_key_hash(raw) != raw
        # The secret part appears in no column of the row.
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM access_apikey WHERE id = %s", [key.pk])
            row = " ".join(str(v) for v in cursor.fetchone())
        assert raw.split("_", 2)[2] not in row


def test_the_key_hash_follows_the_pepper_and_the_secret_key(settings: Any) -> None:
    """The keyed HMAC is prepared once per process (access.services._keyed), for the settings in force: a
    changed pepper or SECRET_KEY hashes differently at once, and the hash is the HMAC-SHA256 it always was."""
    import hashlib
    import hmac

    from access.services import api_key_hash

    raw = "atr_0123abcd_" + "k" * 43
    settings.ATRIUM_API_KEY_PEPPER = "pepper-one"
    one = api_key_hash(raw)
    assert one == hmac.new(b"pepper-one", raw.encode(), hashlib.sha256).hexdigest()
    settings.ATRIUM_API_KEY_PEPPER = "pepper-two"
    assert api_key_hash(raw) != one
    settings.ATRIUM_API_KEY_PEPPER = ""
    derived = hmac.new(settings.SECRET_KEY.encode(), b"atrium-api-key-pepper", hashlib.sha256).digest()
    assert api_key_hash(raw) == hmac.new(derived, raw.encode(), hashlib.sha256).hexdigest()
    settings.SECRET_KEY = settings.SECRET_KEY + "-rotated"
    assert api_key_hash(raw) != hmac.new(derived, raw.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("style", ["x-api-key", "bearer"])
def test_key_authenticates_as_its_user(style: str, tenant_a: Any, client_a: Any, make_user: Any,
                                       key_for: Any) -> None:
    user = make_user(tenant_a, role="power_user")
    key, raw = key_for(tenant_a, user)
    headers = {"HTTP_X_API_KEY": raw} if style == "x-api-key" else {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    response = client_a.get(ME, **headers)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["username"], body["auth_method"], body["api_key_prefix"]) == (user.username, "api_key", key.prefix)
    assert body["roles"] == ["power_user"]


def test_refusals_are_401_with_reason(tenant_a: Any, client_a: Any, client_b: Any, make_user: Any,
                                      key_for: Any, in_tenant: Any) -> None:
    from access.services import api_key_revoke

    user = make_user(tenant_a)
    key, raw = key_for(tenant_a, user)

    def refused(client: Any, value: str, fragment: str) -> None:
        response = client.get(ME, HTTP_X_API_KEY=value)
        assert response.status_code == 401, response.content
        assert fragment in response.json()["error"]["message"]
        assert response["WWW-Authenticate"].startswith("Bearer realm=")

    prefix, secret = raw.split("_")[1], raw.split("_", 2)[2]
    refused(client_a, f"atr_{prefix}_{'x' * len(secret)}", "invalid API key (tenant alpha)")
    refused(client_a, "atr_nothex!_abc", "malformed API key")
    refused(client_b, raw, "invalid API key (tenant beta)")  # keys live in their tenant's schema
    with in_tenant(tenant_a):
        api_key_revoke(api_key=key, revoked_by=user)
    refused(client_a, raw, "revoked")

    expiring, raw2 = key_for(tenant_a, user, expires_at=timezone.now() + timedelta(hours=1))
    assert client_a.get(ME, HTTP_X_API_KEY=raw2).status_code == 200
    with in_tenant(tenant_a):
        type(expiring).objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused(client_a, raw2, "expired")

    _k3, raw3 = key_for(tenant_a, user)
    with in_tenant(tenant_a):
        type(user).objects.filter(pk=user.pk).update(is_active=False)
    refused(client_a, raw3, "deactivated")


def test_no_credentials_is_refused(client_a: Any) -> None:
    assert client_a.get(ME).status_code in (401, 403)


def test_key_permissions_follow_the_users_role(tenant_a: Any, client_a: Any, make_user: Any, key_for: Any,
                                               in_tenant: Any) -> None:
    from django.contrib.auth.models import Group

    user = make_user(tenant_a, role="viewer")
    _key, raw = key_for(tenant_a, user)
    assert client_a.get(ME, HTTP_X_API_KEY=raw).json()["tiers"] == []
    with in_tenant(tenant_a):
        user.groups.add(Group.objects.get(name="basic_user"))
    assert client_a.get(ME, HTTP_X_API_KEY=raw).json()["tiers"] == ["sonnet", "haiku"]


def test_last_use_is_recorded_at_most_once_a_minute(tenant_a: Any, client_a: Any, make_user: Any, key_for: Any,
                                                    in_tenant: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from access.models import ApiKey

    user = make_user(tenant_a)
    key, raw = key_for(tenant_a, user)
    assert client_a.get(ME, HTTP_X_API_KEY=raw).status_code == 200
    with in_tenant(tenant_a):
        first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client_a.get(ME, HTTP_X_API_KEY=raw).status_code == 200
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE") and "access_apikey" in q["sql"]]
    with in_tenant(tenant_a):
        assert ApiKey.objects.get(pk=key.pk).last_used_at == first
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    assert client_a.get(ME, HTTP_X_API_KEY=raw).status_code == 200
    with in_tenant(tenant_a):
        assert ApiKey.objects.get(pk=key.pk).last_used_at > first


def test_account_keys_page_shows_a_new_key_once(tenant_a: Any, client_a: Any, make_user: Any,
                                                in_tenant: Any) -> None:
    from access.models import ApiKey

    user = make_user(tenant_a, password="pw-Secret-123")
    assert client_a.get("/account/keys/").status_code == 302  # sign-in required
    with in_tenant(tenant_a):  # Client.login bypasses the tenant middleware
        assert client_a.login(username=user.username, password="pw-Secret-123")
    response = client_a.post("/account/keys/", {"action": "create", "name": "laptop", "expires_in_days": "30"})
    assert response.status_code == 302 and response["Location"] == "/account/keys/", "POST-redirect-GET"
    assert "atr_" not in response.content.decode() and "atr_" not in str(response.cookies)
    shown = client_a.get("/account/keys/").content.decode()
    raw = re.search(r'id="new-key-value">(atr_[^<]+)<', shown).group(1)
    assert 'id="copy-new-key"' in shown
    assert Client(HTTP_HOST="alpha.localhost").get(ME, HTTP_X_API_KEY=raw).json()["auth_method"] == "api_key"
    listing = client_a.get("/account/keys/").content.decode()  # a reload: the key is not shown again
    assert raw not in listing and 'id="new-key"' not in listing
    assert "laptop" in listing
    with in_tenant(tenant_a):
        assert ApiKey.objects.filter(user=user).count() == 1, "reloading created no second key"
    with in_tenant(tenant_a):
        key = ApiKey.objects.get(user=user)
        assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    assert client_a.post("/account/keys/", {"action": "create", "name": ""}).status_code == 400
    client_a.post("/account/keys/", {"action": "revoke", "key_id": str(key.pk)})
    client_a.logout()  # a signed-in session would authenticate on its own
    assert client_a.get(ME, HTTP_X_API_KEY=raw).status_code == 401


def test_users_cannot_revoke_someone_elses_key(tenant_a: Any, client_a: Any, make_user: Any, key_for: Any,
                                               in_tenant: Any) -> None:
    from access.models import ApiKey

    owner = make_user(tenant_a)
    other = make_user(tenant_a, password="pw-Secret-123")
    key, raw = key_for(tenant_a, owner)
    with in_tenant(tenant_a):  # Client.login bypasses the tenant middleware
        assert client_a.login(username=other.username, password="pw-Secret-123")
    client_a.post("/account/keys/", {"action": "revoke", "key_id": str(key.pk)})
    with in_tenant(tenant_a):
        assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    client_a.logout()
    assert client_a.get(ME, HTTP_X_API_KEY=raw).status_code == 200


def test_admin_creates_a_key_for_another_user_and_sees_it_once(tenant_a: Any, client_a: Any, make_user: Any,
                                                               in_tenant: Any) -> None:
    from access.models import ApiKey

    admin = make_user(tenant_a, role="admin", is_staff=True)
    target = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        client_a.force_login(admin)
    response = client_a.post("/admin/access/apikey/add/",
                             {"user": target.pk, "name": "ci pipeline", "expires_at_0": "", "expires_at_1": ""},
                             follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    raw = re.search(r"(atr_[0-9a-f]{8}_[A-Za-z0-9_-]{43})", page).group(1)
    with in_tenant(tenant_a):
        key = ApiKey.objects.get(user=target)
        assert key.created_by_id == admin.pk
    api = Client(HTTP_HOST="alpha.localhost")  # no session: the key alone authenticates
    assert api.get(ME, HTTP_X_API_KEY=raw).json()["username"] == target.username
    # The change page never shows the key again.
    assert raw not in client_a.get(f"/admin/access/apikey/{key.pk}/change/").content.decode()
    client_a.post("/admin/access/apikey/", {"action": "revoke_keys", "_selected_action": [str(key.pk)]})
    assert api.get(ME, HTTP_X_API_KEY=raw).status_code == 401


def test_admin_add_form_shows_a_refused_key_as_a_form_error(tenant_a: Any, client_a: Any, make_user: Any,
                                                            in_tenant: Any, settings: Any) -> None:
    """An expiry in the past or one key too many: the add page answers 200 with the reason, not a 500."""
    from access.models import ApiKey

    settings.ATRIUM_API_KEYS_PER_USER = 1
    admin = make_user(tenant_a, role="admin", is_staff=True)
    target = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        client_a.force_login(admin)
    past = client_a.post("/admin/access/apikey/add/", {"user": target.pk, "name": "old", "expires_at_0": "2001-01-01",
                                                       "expires_at_1": "00:00:00"})
    assert past.status_code == 200 and "expiry must be in the future" in past.content.decode()
    first = client_a.post("/admin/access/apikey/add/", {"user": target.pk, "name": "one", "expires_at_0": "",
                                                        "expires_at_1": ""})
    assert first.status_code == 200 and "atr_" in first.content.decode()
    second = client_a.post("/admin/access/apikey/add/", {"user": target.pk, "name": "two", "expires_at_0": "",
                                                         "expires_at_1": ""})
    assert second.status_code == 200 and "at most 1 active keys" in second.content.decode()
    with in_tenant(tenant_a):
        assert ApiKey.objects.filter(user=target).count() == 1

"""Issue 14, "permissions": the admin's "Add API key" put the raw key in the messages cookie (base64, readable
without any secret). The key is now shown once, in the response to the POST, and stored nowhere but as a hash."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

pytestmark = pytest.mark.django_db


def test_admin_add_api_key_shows_key_once_and_never_in_a_cookie(tenant_a: Any, client_a: Any, make_user: Any,
                                                               in_tenant: Any) -> None:
    from access.models import ApiKey

    admin = make_user(tenant_a, role="admin", is_staff=True)
    with in_tenant(tenant_a):
        from django.contrib.auth.models import Permission

        admin.user_permissions.add(*Permission.objects.filter(content_type__app_label="access",
                                                              codename__endswith="apikey"))
        client_a.force_login(admin)
    target = make_user(tenant_a, role="basic_user")
    response = client_a.post("/admin/access/apikey/add/",
                             {"user": target.pk, "name": "ci", "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 200, response.content[:500]
    assert "no-store" in response["Cache-Control"]
    match = re.search(r"(atr_[0-9a-f]{8}_[A-Za-z0-9_-]{43})", response.content.decode())
    assert match, "the new key is shown on the response page"
    raw = match.group(1)
    secret_part = raw[len("atr_12345678_"):]  # the 43 random characters (they may contain "_" themselves)
    for morsel in response.cookies.values():
        assert secret_part not in morsel.value
    assert "messages" not in response.cookies or raw not in str(response.cookies["messages"].value)
    with in_tenant(tenant_a):
        assert all(secret_part not in str(s.get_decoded()) for s in Session.objects.all())
        key = ApiKey.objects.get(user=target)
    assert secret_part not in response.get("Location", "")
    # It is the key: it authenticates once copied, and the admin pages never show it again.
    assert Client(HTTP_HOST="alpha.localhost").get("/api/access/me/", HTTP_X_API_KEY=raw).status_code == 200
    later = client_a.get("/admin/access/apikey/").content.decode() + client_a.get(
        f"/admin/access/apikey/{key.pk}/change/").content.decode()
    assert secret_part not in later

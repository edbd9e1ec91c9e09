"""Usage for admins (tenant usage page and JSON, public usage per tenant) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db


def _traffic(client_a: Any, tenant_a: Any, make_user: Any, api_key_for: Any) -> dict[str, int]:
    calls = {}
    for role, n in (("basic_user", 2), ("power_user", 1)):
        user = make_user(tenant_a, role)
        key = api_key_for(tenant_a, user)
        for _ in range(n):
            assert post_messages(client_a, key, body(model="claude-haiku-5-5")).status_code == 200
        calls[user.username] = n
    return calls


def test_tenant_admin_usage_page_and_json(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                          api_key_for: Any, in_tenant: Any) -> None:
    calls = _traffic(client_a, tenant_a, make_user, api_key_for)
    admin = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(admin)
    page = client_a.get("/admin/inference/usagedaily/")
    assert page.status_code == 200
    html = page.content.decode()
    for username in calls:
        assert username in html
    data = client_a.get("/admin/inference/usagedaily/data.json?days=7").json()
    per_user = {row["key"]: row["requests"] for row in data["per_user"]}
    for username, n in calls.items():
        assert per_user[username] == n
    assert sum(d["requests"] for d in data["days"]) >= 3 and len(data["days"]) == 7
    assert {row["key"] for row in data["per_model"]} >= {"claude-haiku-5-5"}


def test_usage_page_needs_staff(sim: Any, client_a: Any, tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    with in_tenant(tenant_a):
        client_a.force_login(user)
    # Signed in but not staff: a plain 403 (config/admin_sites.py), not a sign-in form that cannot help.
    assert client_a.get("/admin/inference/usagedaily/data.json").status_code == 403


def test_public_admin_usage_per_tenant(sim: Any, client_a: Any, public_client: Any, tenant_a: Any,
                                       make_user: Any, api_key_for: Any) -> None:
    from django.db import connection

    calls = _traffic(client_a, tenant_a, make_user, api_key_for)
    connection.set_schema_to_public()  # the tenant requests above left the connection on alpha's schema
    admin = get_user_model().objects.create_superuser("platform-usage", "pu@example.com", "pw-Secret-123")
    public_client.force_login(admin)
    response = public_client.get("/admin/catalog/tenantusage/data.json")
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    data = response.json()
    alpha = next(r for r in data["tenants"] if r["tenant"] == tenant_a.schema_name)
    assert alpha["requests"] >= sum(calls.values()) and alpha["output_tokens"] > 0
    assert public_client.get("/admin/catalog/tenantusage/").status_code == 200


def test_metrics_on_the_public_host(sim: Any, client_a: Any, public_client: Any, tenant_a: Any, make_user: Any,
                                    api_key_for: Any, settings: Any) -> None:
    _traffic(client_a, tenant_a, make_user, api_key_for)
    assert public_client.get("/metrics").status_code == 401, "never open, token or not"
    settings.ATRIUM_METRICS_TOKEN = "s3cret"
    text = public_client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").content.decode()
    assert 'atrium_model_requests_total{source="api",status="success",tenant="alpha"}' in text
    assert "atrium_model_request_seconds_bucket" in text and "atrium_tokens_total" in text
    assert client_a.get("/metrics").status_code == 404, "tenant hosts do not expose other tenants' metrics"
    assert public_client.get("/metrics").status_code == 401
    assert public_client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401

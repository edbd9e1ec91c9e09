"""Each tenant's admin on its own host; users cannot cross tenants; the public admin manages tenants."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from tenants.models import Domain, Tenant


def test_tenant_admin_login_works_on_its_own_host(client_a: Any, make_user: Any, tenant_a: Any) -> None:
    make_user(tenant_a, role="admin", username="ada", is_staff=True)
    response = client_a.post("/admin/login/?next=/admin/", {"username": "ada", "password": "pw-Secret-123"})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    index = client_a.get("/admin/")
    assert index.status_code == 200
    assert b"workspace-overview" in index.content and b"Django administration" not in index.content


def test_user_of_tenant_a_cannot_log_in_on_tenant_b(client_b: Any, make_user: Any, tenant_a: Any) -> None:
    make_user(tenant_a, role="admin", username="alice-a", is_staff=True)
    response = client_b.post("/admin/login/?next=/admin/", {"username": "alice-a", "password": "pw-Secret-123"})
    assert response.status_code == 200  # the form again, with an error
    assert b"Please enter the correct username and password" in response.content
    assert client_b.get("/admin/").status_code == 302


def test_session_from_tenant_a_is_not_valid_on_tenant_b(
    client_a: Any, make_user: Any, tenant_a: Any, tenant_b: Any
) -> None:
    make_user(tenant_a, role="admin", username="sess-a", is_staff=True)
    login = client_a.post("/admin/login/?next=/admin/", {"username": "sess-a", "password": "pw-Secret-123"})
    assert login.status_code == 302
    assert client_a.get("/admin/").status_code == 200
    cookie = client_a.cookies["sessionid"].value
    other = Client(HTTP_HOST="beta.localhost")
    other.cookies["sessionid"] = cookie
    response = other.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_unknown_host_is_not_served(db: None, tenants: Any) -> None:
    response = Client(HTTP_HOST="nobody.localhost").get("/admin/")
    assert response.status_code == 404


def test_public_admin_manages_tenants(public_client: Any, tenant_a: Any) -> None:
    admin = get_user_model().objects.create_superuser("platform-admin", "p@example.com", "pw-Secret-123")
    public_client.force_login(admin)
    listing = public_client.get("/admin/tenants/tenant/")
    assert listing.status_code == 200
    assert b"alpha" in listing.content

    page = public_client.get(f"/admin/tenants/tenant/{tenant_a.pk}/change/")
    assert page.status_code == 200
    form = {
        "name": "Alpha Renamed", "allowed_models": "sonnet, haiku", "max_tokens_per_request": "2048",
        "requests_per_minute": "30", "tokens_per_day": "10000", "user_requests_per_minute": "",
        "user_tokens_per_day": "", "retention_days": "14", "processing_notice": "Notice v2", "data_region": "eu",
        "provider_order": '["anthropic", "bedrock:eu-west-1"]', "gdpr_account_action": "deactivate",
        "record_policy": "serve_and_journal", "is_active": "on", "anthropic_api_key": "sk-new-key",
        "session_idle_minutes": "30", "session_max_hours": "12", "mfa_required_for_admins": "on",
        "domains-TOTAL_FORMS": "0", "domains-INITIAL_FORMS": "0", "domains-MIN_NUM_FORMS": "0",
        "domains-MAX_NUM_FORMS": "1000",
    }
    response = public_client.post(f"/admin/tenants/tenant/{tenant_a.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    assert tenant.name == "Alpha Renamed"
    assert tenant.allowed_models == ["sonnet", "haiku"]
    assert tenant.retention_days == 14
    assert tenant.provider_order == ["anthropic", "bedrock:eu-west-1"]
    assert tenant.record_policy == "serve_and_journal"
    assert tenant.credentials["anthropic"]["api_key"] == "sk-new-key"
    assert Domain.objects.filter(tenant=tenant).exists()
    # The edit is in the tenant's own audit trail (which fields, which providers; never the values).
    from django_tenants.utils import tenant_context

    from audit.models import AuditEntry

    with tenant_context(tenant):
        policy = AuditEntry.objects.filter(event_type="policy_change").order_by("-seq").first()
        creds = AuditEntry.objects.filter(event_type="credentials_change").order_by("-seq").first()
        assert policy is not None and "retention_days" in policy.metadata["fields"]
        assert policy.personal["username"] == "platform-admin"
        assert creds is not None and creds.metadata["providers"] == ["anthropic"]
        assert "sk-new-key" not in str(creds.metadata)
    connection.set_schema_to_public()


def test_public_admin_rejects_invalid_policy(public_client: Any, tenant_a: Any) -> None:
    admin = get_user_model().objects.create_superuser("platform-admin2", "p2@example.com", "pw-Secret-123")
    public_client.force_login(admin)
    form = {
        "name": "Alpha", "allowed_models": "gpt-4, sonnet", "max_tokens_per_request": "-5",
        "requests_per_minute": "30", "tokens_per_day": "10000", "retention_days": "0",
        "processing_notice": "", "data_region": "", "provider_order": '["azure"]',
        "gdpr_account_action": "deactivate", "record_policy": "fail_closed",
        "domains-TOTAL_FORMS": "0", "domains-INITIAL_FORMS": "0", "domains-MIN_NUM_FORMS": "0",
        "domains-MAX_NUM_FORMS": "1000",
    }
    response = public_client.post(f"/admin/tenants/tenant/{tenant_a.pk}/change/", form)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Unknown model tier or id: gpt-4" in body
    assert "Unknown provider target: azure" in body
    assert "greater than or equal to" in body  # negative max tokens, zero retention
    assert Tenant.objects.get(pk=tenant_a.pk).name != "Alpha" or Tenant.objects.get(pk=tenant_a.pk).retention_days != 0


def test_tenant_admin_does_not_list_tenants(client_a: Any, make_user: Any, tenant_a: Any) -> None:
    make_user(tenant_a, role="admin", username="ada2", is_staff=True)
    client_a.post("/admin/login/", {"username": "ada2", "password": "pw-Secret-123"})
    index = client_a.get("/admin/")
    assert index.status_code == 200
    assert b"/admin/tenants/tenant/" not in index.content


def test_tenant_lookup_cache_keeps_hosts_apart(tenants: Any, db: None, settings: Any, make_user: Any) -> None:
    """With the production lookup cache on, alternating hosts still land each request in its own schema, and
    an API key of one tenant is unknown on the other."""
    from access.services import api_key_create
    from tests.conftest import tenant_host

    settings.ATRIUM_TENANT_CACHE_S = 60.0
    keys = {}
    for slug in ("alpha", "beta"):
        user = make_user(tenants[slug], "basic_user")
        with schema_context(slug):
            keys[slug] = api_key_create(user=user, name="cache")[1]
    clients = {slug: Client(HTTP_HOST=tenant_host(tenants[slug])) for slug in ("alpha", "beta")}
    for _ in range(3):
        for slug in ("alpha", "beta", "beta", "alpha"):
            me = clients[slug].get("/api/access/me/", HTTP_X_API_KEY=keys[slug])
            assert me.status_code == 200 and me.json()["tenant"] == slug
            other = "beta" if slug == "alpha" else "alpha"
            assert clients[slug].get("/api/access/me/", HTTP_X_API_KEY=keys[other]).status_code == 401
    assert Client(HTTP_HOST="localhost").get("/healthz").status_code == 200
    assert clients["alpha"].get("/api/access/me/", HTTP_X_API_KEY=keys["alpha"]).json()["tenant"] == "alpha"

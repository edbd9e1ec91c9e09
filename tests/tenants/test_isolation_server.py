"""Tenant isolation against a real gunicorn (two worker processes, the production host and key caches emptied by
PostgreSQL NOTIFY): the platform host takeover is refused, and a suspended tenant is suspended on every path."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import WebServer, hosts_resolve, subprocess_env
from tests.tenants.test_cache_invalidation import eventually

pytestmark = pytest.mark.slow

SLUG = "suspendme"
PASSWORD = "pw-Secret-123"


@pytest.fixture(scope="module")
def server(tenants: dict[str, Any], django_db_blocker: Any) -> Iterator[WebServer]:
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    with django_db_blocker.unblock():
        if not Tenant.objects.filter(schema_name=SLUG).exists():
            tenant_provision(slug=SLUG, name="Suspend Me")
    hosts_resolve("alpha.localhost", f"{SLUG}.localhost")
    env = subprocess_env(ATRIUM_TENANT_CACHE_S="30", ATRIUM_AUTH_CACHE_S="30")
    web = WebServer(env, workers=2).start()
    try:
        yield web
    finally:
        web.stop()


def _user(schema: str, role: str, **extra: Any) -> tuple[Any, str]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    from access.services import api_key_create

    with schema_context(schema):
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        user = get_user_model().objects.create_user(username=name, password=PASSWORD, **extra)
        user.groups.add(Group.objects.get(name=role))
        _row, key = api_key_create(user=user, name="isolation")
    return user, key


def _sign_in(client: httpx.Client, path: str, username: str) -> httpx.Response:
    page = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    return client.post(path, data={"username": username, "password": PASSWORD,
                                   "csrfmiddlewaretoken": token.group(1)}, headers={"Referer": str(page.url)})


def _fresh(web: WebServer, host: str, **kwargs: Any) -> httpx.Client:
    # A new connection per request spreads the calls over both worker processes.
    return httpx.Client(base_url=web.url(host), follow_redirects=False, timeout=30,
                        headers={"Connection": "close"}, **kwargs)


def test_platform_host_takeover_through_the_localhost_domain_is_refused(server: WebServer, committed: None) -> None:
    """The finding: A's admin re-pointed the platform's own `localhost` domain to A, signed in on the platform host
    and locked the platform admin out; and added a periodic task that beat ran in the public schema."""
    from django.contrib.auth import get_user_model
    from django_celery_beat.models import PeriodicTask

    from tenants.models import Domain, Tenant

    alpha_tenant = Tenant.objects.get(schema_name="alpha")
    admin, _key = _user("alpha", "admin", is_staff=True)
    platform_name = f"platform-{uuid.uuid4().hex[:6]}"
    platform = get_user_model().objects.create_superuser(platform_name, "p@example.com", PASSWORD)
    localhost = Domain.objects.get(domain="localhost")
    tasks_before = PeriodicTask.objects.count()
    try:
        with _fresh(server, "alpha.localhost") as alpha:
            assert _sign_in(alpha, "/admin/login/", admin.username).status_code == 302
            assert alpha.get("/admin/").status_code == 200
            token = alpha.cookies.get("csrftoken") or ""
            takeover = alpha.post(f"/admin/tenants/domain/{localhost.pk}/change/",
                                  data={"domain": "localhost", "tenant": str(alpha_tenant.pk), "is_primary": "on",
                                        "csrfmiddlewaretoken": token},
                                  headers={"Referer": server.url("alpha.localhost") + "/admin/"})
            assert takeover.status_code == 404
            beat = alpha.post("/admin/django_celery_beat/periodictask/add/",
                              data={"name": "every-minute", "task": "tenants.tasks.schema_probe",
                                    "csrfmiddlewaretoken": token},
                              headers={"Referer": server.url("alpha.localhost") + "/admin/"})
            assert beat.status_code == 404
            for path in ("/admin/tenants/tenant/", "/admin/tenants/domain/", "/admin/django_celery_beat/",
                         "/admin/catalog/catalogmodel/"):
                assert alpha.get(path).status_code == 404, path
        localhost.refresh_from_db()
        assert localhost.tenant.schema_name == "public"
        assert PeriodicTask.objects.count() == tasks_before
        with _fresh(server, "localhost") as public:
            # A's administrator is nobody on the platform host; the platform admin still signs in there.
            refused = _sign_in(public, "/admin/login/", admin.username)
            assert refused.status_code == 200 and "correct username and password" in refused.text
            assert _sign_in(public, "/admin/login/", platform_name).status_code == 302
            assert public.get("/admin/tenants/domain/").status_code == 200
    finally:
        # A public-schema user: Django's cascade would look for tenant-only tables (identities, keys) here.
        get_user_model().objects.filter(pk=platform.pk)._raw_delete("default")
        from django_tenants.utils import schema_context

        with schema_context("alpha"):
            get_user_model().objects.filter(pk=admin.pk).delete()


def test_a_suspended_tenant_is_suspended_on_every_path(server: WebServer, committed: None) -> None:
    from tenants.models import Tenant

    admin, key = _user(SLUG, "admin", is_staff=True)
    host = f"{SLUG}.localhost"
    session = _fresh(server, host)
    assert _sign_in(session, "/admin/login/", admin.username).status_code == 302
    assert session.get("/admin/").status_code == 200
    with _fresh(server, host) as api:
        assert api.get("/v1/models", headers={"x-api-key": key}).status_code == 200
    tenant = Tenant.objects.get(schema_name=SLUG)
    try:
        tenant.is_active = False
        tenant.save(update_fields=["is_active"])

        def refused_by_both_workers() -> bool:
            return all(_fresh(server, host).get("/v1/models", headers={"x-api-key": key}).status_code == 403
                       for _ in range(6))

        eventually(refused_by_both_workers, "the suspension reached every worker")
        for path in ("/", "/accounts/login/", "/admin/", "/admin/login/", "/chat/", "/compliance/",
                     "/api/conversations/", "/api/docs/"):
            for client in (session, _fresh(server, host)):
                response = client.get(path)
                assert response.status_code == 403, (path, response.status_code)
                if path.startswith("/api/"):
                    assert "suspended" in response.json()["error"]["message"]
                else:
                    assert "Tenant suspended" in response.text, path
        with _fresh(server, host) as api:
            call = api.post("/v1/messages", headers={"x-api-key": key}, json={
                "model": "claude-haiku-5-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
            assert call.status_code == 403 and call.json()["error"]["type"] == "permission_error"
            login = api.post("/accounts/login/", data={"username": admin.username, "password": PASSWORD})
            assert login.status_code == 403 and "Tenant suspended" in login.text
            assert api.get("/healthz").status_code == 200
        # Reactivated: the session from before works again, in every worker.
        tenant.is_active = True
        tenant.save(update_fields=["is_active"])
        eventually(lambda: all(session.get("/admin/").status_code == 200 for _ in range(6)),
                   "the reactivation reached every worker")
    finally:
        session.close()
        Tenant.objects.filter(schema_name=SLUG).update(is_active=True)

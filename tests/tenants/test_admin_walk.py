"""Walk every URL of both admin sites from the wrong side: nothing answers but a refusal, nothing changes.

The URL list comes from the sites' registries (tests/tenants/admin_walk.py), so a ModelAdmin registered tomorrow is
walked too; a ModelAdmin registered anywhere the walk cannot see (Django's default site, a third site, both sites)
fails `test_every_model_admin_is_on_exactly_one_site`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django_tenants.utils import schema_context

from config.admin_sites import ADMIN_SITES, platform_site, tenant_site
from tests.tenants.admin_walk import (
    STANDARD_VIEWS,
    AdminUrl,
    refused,
    site_urls,
    standard_views_of,
    uncovered_model_admins,
)

# A POST body that would do harm if any view accepted it: re-point a domain, confirm a deletion, grant superuser.
HOSTILE_POST = {"tenant": "", "domain": "localhost", "is_primary": "on", "post": "yes", "name": "walked",
                "is_superuser": "on", "is_staff": "on", "max_tokens_per_request": "200000", "task": "x",
                "action": "delete_selected", "_selected_action": "1"}


def test_every_model_admin_is_on_exactly_one_site() -> None:
    assert uncovered_model_admins(ADMIN_SITES) == []
    assert platform_site._registry and tenant_site._registry


def test_the_coverage_check_catches_a_model_admin_on_the_default_site() -> None:
    from django_celery_beat.models import PeriodicTask

    admin.site.register(PeriodicTask)
    try:
        assert uncovered_model_admins(ADMIN_SITES) == ["django_celery_beat.PeriodicTask on the default admin site"]
    finally:
        admin.site.unregister(PeriodicTask)


def test_the_walk_covers_every_view_of_every_model_admin() -> None:
    for site in ADMIN_SITES:
        urls = site_urls(site)
        views = standard_views_of(urls, site)
        for model in site._registry:
            label = f"{model._meta.app_label}.{model._meta.model_name}"
            assert views.get(label) == set(STANDARD_VIEWS), label
    # Custom views are walked as well (breaker reset, health run, report data, password change).
    names = {u.name for u in site_urls(platform_site)} | {u.name for u in site_urls(tenant_site)}
    assert {"catalog_providerhealthcheck_reset", "catalog_providerhealthcheck_run", "auth_user_password_change",
            "inference_usage_data", "catalog_tenantusage_data"} <= names


def _snapshot(tenants: dict[str, Any]) -> dict[str, Any]:
    """What a successful cross-boundary write would change, in the public schema and in both tenants."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.auth.models import Group
    from django_celery_beat.models import PeriodicTask

    from inference.catalog.models import CatalogModel
    from tenants.models import Domain, Tenant

    state: dict[str, Any] = {
        "domains": sorted(Domain.objects.values_list("domain", "tenant_id", "is_primary")),
        "tenants": sorted(Tenant.objects.values_list("schema_name", "name", "is_active", "max_tokens_per_request",
                                                     "tokens_per_day", "provider_order")),
        "beat": PeriodicTask.objects.count(),
        "catalog": sorted(CatalogModel.objects.values_list("model_id", "enabled")),
        "public_log": LogEntry.objects.count(),
    }
    for slug in tenants:
        with schema_context(slug):
            state[slug] = {
                "users": sorted(get_user_model().objects.values_list("username", "is_staff", "is_superuser",
                                                                     "is_active", "password")),
                "roles": sorted((g.name, sorted(g.permissions.values_list("codename", flat=True)))
                                for g in Group.objects.all()),
                "log": LogEntry.objects.count(),
            }
    return state


def _walk(client: Client, urls: list[AdminUrl], *, expect_404: bool) -> list[str]:
    problems = []
    for url in urls:
        for method in ("GET", "POST") if url.writes else ("GET",):
            response = (client.get(url.path) if method == "GET" else client.post(url.path, HOSTILE_POST))
            if expect_404:
                if url.name == "index":
                    break  # /admin/ itself exists on both kinds of host (each its own site's index)
                if response.status_code != 404:
                    problems.append(f"{url.site} {url.path}: {method} answered {response.status_code}, not 404")
                continue
            why = refused(response, method=method)
            if why is not None:
                problems.append(f"{url.site} {url.path}: {why}")
    return problems


def test_walk_every_admin_url_from_the_wrong_side(tenants: dict[str, Any], make_user: Any, in_tenant: Any) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from inference.catalog.models import CatalogModel
    from tenants.models import Domain
    from tests.conftest import tenant_host

    alpha, beta = tenants["alpha"], tenants["beta"]
    alpha_admin = make_user(alpha, role="admin", username="walk-admin-a", is_staff=True)
    beta_victim = make_user(beta, role="basic_user", username="walk-victim-b")
    beta_twin = make_user(beta, role="basic_user", username="walk-admin-a")  # the same person, a member of beta
    platform_admin = get_user_model().objects.create_superuser("walk-platform", "wp@example.com", "pw-Secret-123")
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    task = PeriodicTask.objects.create(name="walk-task", task="tenants.tasks.schema_probe", interval=every)

    platform_ids = {
        "tenants.tenant": str(beta.pk), "tenants.domain": str(Domain.objects.get(domain="localhost").pk),
        "catalog.catalogmodel": str(CatalogModel.objects.order_by("pk").first().pk),  # type: ignore[union-attr]
        "catalog.tenantusage": str(beta.pk), "django_celery_beat.periodictask": str(task.pk),
        "django_celery_beat.intervalschedule": str(every.pk),
    }
    with in_tenant(beta):
        from django.contrib.auth.models import Group

        beta_ids = {"auth.user": str(beta_victim.pk), "auth.group": str(Group.objects.get(name="admin").pk)}
    platform_urls = site_urls(platform_site, platform_ids)
    beta_urls = site_urls(tenant_site, beta_ids)
    alpha_urls = site_urls(tenant_site, {"auth.user": str(alpha_admin.pk)})
    before = _snapshot(tenants)

    a_host, b_host = tenant_host(alpha), tenant_host(beta)
    own = Client(HTTP_HOST=a_host, raise_request_exception=False)
    with in_tenant(alpha):
        own.force_login(alpha_admin)
    cookie = own.cookies["sessionid"].value
    platform = Client(HTTP_HOST="localhost", raise_request_exception=False)
    platform.force_login(platform_admin)
    platform_cookie = platform.cookies["sessionid"].value

    def replay(host: str, session: str) -> Client:
        client = Client(HTTP_HOST=host, raise_request_exception=False)
        client.cookies["sessionid"] = session
        return client

    twin = Client(HTTP_HOST=b_host, raise_request_exception=False)
    with in_tenant(beta):
        twin.force_login(beta_twin)

    problems: list[str] = []
    # (a) the tenant admin on its own host: the platform site has no URL there; its own site never fails.
    problems += [f"(a) {p}" for p in _walk(own, platform_urls, expect_404=True)]
    for url in alpha_urls:
        status = own.get(url.path).status_code
        if status >= 500:
            problems.append(f"(a) own site {url.path}: GET answered {status}")
    for url in platform_urls:  # and the platform admin on its own host: every page renders
        status = platform.get(url.path).status_code
        if status >= 500:
            problems.append(f"platform own site {url.path}: GET answered {status}")
    # (b) the tenant admin on another tenant's host: its session replayed, and its account there (not staff).
    problems += [f"(b) {p}" for p in _walk(replay(b_host, cookie), beta_urls, expect_404=False)]
    problems += [f"(b) {p}" for p in _walk(replay(b_host, cookie), platform_urls, expect_404=True)]
    twin_walk = _walk(twin, beta_urls, expect_404=False)
    problems += [f"(b, signed in) {p}" for p in twin_walk]
    assert twin.get("/admin/auth/user/").status_code == 403  # signed in but not staff: refused, not a login form
    # (c) the platform admin on a tenant host.
    problems += [f"(c) {p}" for p in _walk(replay(a_host, platform_cookie), alpha_urls, expect_404=False)]
    problems += [f"(c) {p}" for p in _walk(replay(a_host, platform_cookie), platform_urls, expect_404=True)]
    # (d) the tenant admin on the public host.
    problems += [f"(d) {p}" for p in _walk(replay("localhost", cookie), platform_urls, expect_404=False)]
    problems += [f"(d) {p}" for p in _walk(replay("localhost", cookie), alpha_urls, expect_404=True)]

    assert problems == [], "\n".join(problems[:40])
    assert _snapshot(tenants) == before
    # The walk reached real pages: the platform admin on its own host and the tenant admin on its own host.
    assert platform.get(f"/admin/tenants/domain/{platform_ids['tenants.domain']}/change/").status_code == 200
    assert own.get("/admin/auth/user/").status_code == 200


def test_domain_repoint_from_a_tenant_host_is_refused(tenants: dict[str, Any], make_user: Any,
                                                      in_tenant: Any) -> None:
    """The finding: A's admin POSTed B's domain with tenant=A; B's keys then failed on B's host, A's worked."""
    from access.services import api_key_create
    from tenants.models import Domain

    alpha, beta = tenants["alpha"], tenants["beta"]
    alpha_admin = make_user(alpha, role="admin", is_staff=True)
    beta_member = make_user(beta, role="basic_user")
    with in_tenant(beta):
        _row, beta_key = api_key_create(user=beta_member, name="repoint")
    own = Client(HTTP_HOST="alpha.localhost")
    with in_tenant(alpha):
        own.force_login(alpha_admin)
    beta_domain = Domain.objects.get(domain="beta.localhost")
    for path in (f"/admin/tenants/domain/{beta_domain.pk}/change/", "/admin/tenants/domain/add/",
                 f"/admin/tenants/domain/{beta_domain.pk}/delete/"):
        response = own.post(path, {"domain": "beta.localhost", "tenant": str(alpha.pk), "is_primary": "on",
                                   "post": "yes"})
        assert response.status_code == 404, path
    assert Domain.objects.get(pk=beta_domain.pk).tenant_id == beta.pk
    me = Client(HTTP_HOST="beta.localhost").get("/api/access/me/", HTTP_X_API_KEY=beta_key)
    assert me.status_code == 200 and me.json()["tenant"] == "beta"

"""The two Django admin sites: the platform's (public host only) and each tenant's (tenant hosts only).

One admin site serving both kinds of host let a tenant's administrator reach platform objects (tenants, domains,
the beat schedule) that were merely hidden from its index. Now each ModelAdmin is registered on exactly one of
these sites, each site is mounted in only one URLconf (config/urls_public.py, config/urls_tenant.py), so the other
kind of host has no URL for it at all (404); and each site checks the host and the user again on every request
(`has_permission`), should it ever be mounted where it does not belong. Django's default `admin.site` is mounted
nowhere.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django_tenants.utils import get_public_schema_name


def on_public_host(request: HttpRequest | None = None) -> bool:
    """The request (and this connection) is on the platform's own host, in the public schema."""
    tenant = getattr(request, "tenant", None) if request is not None else None
    if tenant is not None and tenant.schema_name != get_public_schema_name():
        return False
    return getattr(connection, "schema_name", None) == get_public_schema_name()


def on_tenant_host(request: HttpRequest | None = None) -> bool:
    """The request (and this connection) is on a tenant's host, in that tenant's schema."""
    schema = getattr(connection, "schema_name", None)
    if schema in (None, get_public_schema_name()):
        return False
    tenant = getattr(request, "tenant", None) if request is not None else None
    return tenant is None or tenant.schema_name == schema


class _HostBoundSite(admin.AdminSite):
    # A URL of the other site is unknown here: a plain 404 for everyone, not Django's sign-in redirect for visitors.
    final_catch_all_view = False

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        """Django redirects anyone refused to the sign-in page; someone already signed in (a chat user, a member
        without the staff flag) gets a plain 403 instead of a sign-in form that cannot help."""
        guarded = super().admin_view(view, cacheable)

        @functools.wraps(guarded)
        def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user: Any = request.user
            if user.is_authenticated and not self.has_permission(request):
                raise PermissionDenied
            return guarded(request, *args, **kwargs)

        return inner


class PlatformAdminSite(_HostBoundSite):
    """Tenants, domains, the model catalog, provider health, the beat schedule, platform usage and audit."""

    site_header = "Atrium platform administration"
    site_title = "Atrium platform"
    index_title = "Platform"
    # The public host serves no site of its own (only the admin, probes and metrics): no "View site" link to a 404.
    site_url = None

    def has_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return bool(on_public_host(request) and user.is_active and user.is_staff)


class TenantAdminSite(_HostBoundSite):
    """One tenant's users, roles, SSO, API keys, audit trail, consents, GDPR jobs, usage and policy (read-only).

    Nobody in a tenant schema is a superuser (a database constraint, access migration 0004): what a tenant's
    administrator may do here is exactly the permissions of its roles.
    """

    site_header = "Atrium administration"  # each request shows the tenant's own name instead (each_context)
    site_title = "Atrium"
    index_title = "Overview"
    site_url = "/chat/"
    index_template = "admin/tenant_index.html"

    # The apps' and models' names are the product's words (their AppConfigs; access/product_names.py for Django's
    # own), on every page; the index lists the apps in this order.
    APP_ORDER = ["auth", "access", "audit", "inference", "axes", "otp_totp"]

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        from config.admin_brand import brand_for

        context = super().each_context(request)
        tenant = getattr(request, "tenant", None)
        if tenant is not None and on_tenant_host(request):
            brand = brand_for(tenant)
            context.update(site_header=brand.name, site_title=f"{brand.name} · Atrium", brand=brand)
        return context

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = super().get_app_list(request, app_label)
        order = {label: i for i, label in enumerate(self.APP_ORDER)}
        return sorted(apps, key=lambda a: order.get(a["app_label"], len(order)))

    def get_urls(self) -> list[Any]:
        from django.urls import path

        from config.admin_brand import brand_css_view

        return [path("brand.css", brand_css_view, name="brand_css"), *super().get_urls()]

    # Set by access/admin.py (config imports no app): the overview's figures, for the index page.
    overview_provider: Any = None

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        provider = self.overview_provider
        overview = provider(request) if provider is not None and self.has_permission(request) else None
        return super().index(request, {"overview": overview, **(extra_context or {})})

    def has_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        tenant = getattr(request, "tenant", None)
        return bool(on_tenant_host(request) and getattr(tenant, "is_active", True) and user.is_active
                    and user.is_staff and not user.is_superuser)


platform_site = PlatformAdminSite(name="platform_admin")
tenant_site = TenantAdminSite(name="tenant_admin")
ADMIN_SITES: tuple[admin.AdminSite, ...] = (platform_site, tenant_site)

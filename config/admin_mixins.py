"""Admin building blocks shared by the apps: which site (public or tenant) a model belongs to, read-only admins.

One Django admin serves both the public host (platform) and every tenant host; a ModelAdmin whose table lives in
only one kind of schema must hide itself on the other.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest
from django_tenants.utils import get_public_schema_name


def on_public_site() -> bool:
    return getattr(connection, "schema_name", None) == get_public_schema_name()


def on_tenant_site() -> bool:
    return getattr(connection, "schema_name", None) not in (None, get_public_schema_name())


class ReadOnlyAdminMixin:
    """No add, change or delete, for anyone: records and reports."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TenantSiteMixin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Shown only in a tenant's admin (the table exists only in tenant schemas)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return on_tenant_site() and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return on_tenant_site() and super().has_view_permission(request, obj)


class PublicSiteMixin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Shown only in the platform (public) admin."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return on_public_site() and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return on_public_site() and super().has_view_permission(request, obj)

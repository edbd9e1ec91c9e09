"""Admin building blocks shared by the apps: which site (platform or tenant) a ModelAdmin belongs to, read-only admins.

A ModelAdmin is registered on exactly one of config.admin_sites' two sites. The mixins below check the host again in
every permission method (view, add, change, delete, module), so a ModelAdmin answers "no" even if its site were
ever mounted on the wrong kind of host: the refusal does not depend on which links the index shows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from config.admin_sites import on_public_host, on_tenant_host


def on_public_site() -> bool:
    return on_public_host()


def on_tenant_site() -> bool:
    return on_tenant_host()


class ReadOnlyAdminMixin:
    """No add, change or delete, for anyone: records and reports."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _HostBoundAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    @staticmethod
    def host_ok(request: HttpRequest) -> bool:
        raise NotImplementedError

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.host_ok(request) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.host_ok(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.host_ok(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.host_ok(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.host_ok(request) and super().has_delete_permission(request, obj)


class TenantSiteMixin(_HostBoundAdmin):
    """Registered on `tenant_site`: answers only on a tenant's host, in that tenant's schema."""

    @staticmethod
    def host_ok(request: HttpRequest) -> bool:
        return on_tenant_host(request)


class PublicSiteMixin(_HostBoundAdmin):
    """Registered on `platform_site`: answers only on the platform's own (public) host."""

    @staticmethod
    def host_ok(request: HttpRequest) -> bool:
        return on_public_host(request)

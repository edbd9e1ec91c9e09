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


class PlatformAuditMixin(PublicSiteMixin):
    """A platform-site admin whose every write (save, delete, bulk action) is recorded in the platform trail with
    the real actor, in the transaction of the change (tenants.platform_audit.platform_change)."""

    audit_kind = "object"

    def _audit(self, request: HttpRequest, action: str, obj: Any, metadata: dict[str, Any] | None = None) -> None:
        from tenants.platform_audit import platform_actor, platform_change

        platform_change(actor=platform_actor(request), action=f"{self.audit_kind}_{action}",
                        target=f"{self.opts.label_lower}:{obj.pk}", metadata={"name": str(obj), **(metadata or {})})

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        self._audit(request, "change" if change else "add", obj,
                    {"fields": sorted(getattr(form, "changed_data", []) or [])})

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._audit(request, "delete", obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def get_actions(self, request: HttpRequest) -> Any:
        actions: dict[str, Any] = dict(super().get_actions(request))
        audited = {}
        for name, entry in actions.items():
            func, action_name, description = entry
            audited[name] = (self._audited_action(func, action_name), action_name, description)
        return audited

    def _audited_action(self, func: Any, action_name: str) -> Any:
        def run(modeladmin: Any, request: HttpRequest, queryset: Any) -> Any:
            if action_name != "delete_selected":  # deletion is audited per object in delete_queryset
                for obj in queryset:
                    self._audit(request, action_name, obj)
            return func(modeladmin, request, queryset)

        return run

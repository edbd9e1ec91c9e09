"""The platform site's audited admin: every write through it is an entry in the platform trail.

Lives in tenants (next to platform_change, which it calls) rather than in config.admin_mixins, so config's shared
infrastructure imports no app (the import-linter contract in pyproject.toml).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from config.admin_mixins import PublicSiteMixin
from tenants.platform_audit import platform_actor, platform_change


class PlatformAuditMixin(PublicSiteMixin):
    """A platform-site admin whose every write (save, delete, bulk action) is recorded in the platform trail with
    the real actor, in the transaction of the change (tenants.platform_audit.platform_change)."""

    audit_kind = "object"

    def _audit(self, request: HttpRequest, action: str, obj: Any, metadata: dict[str, Any] | None = None) -> None:
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

"""Tenant admin of the SIEM destinations of the tenant's own trail: its administrators (access.admin) add, change
and delete the ones they made, and see (read-only) the ones the platform configured for them. Every change is an
entry in the tenant's audit trail, in the transaction of the change; the secret's value never is."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connection, transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.models import TenantSiemDestination
from audit.services import audit_record
from audit.siem.admin import SiemCursorInline, SiemDestinationForm
from audit.siem.services import siem_destination_save
from config.admin_mixins import TenantSiteMixin
from config.admin_sites import tenant_site

PERMISSION = "access.admin"  # "Administer the tenant": the admin role's


class TenantSiemDestinationForm(SiemDestinationForm):
    class Meta:
        model = TenantSiemDestination
        fields = ["name", "url", "secret", "ca_bundle", "verify_tls", "backfill", "enabled"]


@admin.register(TenantSiemDestination, site=tenant_site)
class TenantSiemDestinationAdmin(TenantSiteMixin):
    form = TenantSiemDestinationForm
    list_display = ["name", "url", "owner", "enabled", "created_at"]
    inlines = [SiemCursorInline]
    readonly_fields = ["owner", "secret_set"]
    fieldsets = [
        (None, {"fields": ["name", "url", "enabled", "backfill", "owner"]}),
        ("Credentials and TLS", {"fields": ["secret", "secret_set", "ca_bundle", "verify_tls"]}),
    ]

    @admin.display(description="secret stored")
    def secret_set(self, obj: TenantSiemDestination) -> str:
        return "yes" if obj.pk and obj.secret else "no"

    def get_queryset(self, request: HttpRequest) -> QuerySet[TenantSiemDestination]:
        tenant = getattr(connection, "tenant", None)
        return super().get_queryset(request).filter(tenant_id=getattr(tenant, "pk", None))

    def _allowed(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return self.host_ok(request) and bool(user.is_active and user.has_perm(PERMISSION))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._allowed(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Destinations the platform set up for this tenant are read-only here.
        return self._allowed(request) and (obj is None or obj.owner == "tenant")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}  # deletions one at a time, each audited

    def _audit(self, request: HttpRequest, obj: TenantSiemDestination, action: str,
               fields: list[str] | None = None) -> None:
        metadata: dict[str, Any] = {"source": "admin", "action": action, "destination": str(obj.pk),
                                    "name": obj.name}
        if fields is not None:
            metadata["fields"] = sorted(fields)
        audit_record(event_type="siem_destination_change", user=request.user, request=request, metadata=metadata)

    def save_model(self, request: HttpRequest, obj: TenantSiemDestination, form: Any, change: bool) -> None:
        if not change:
            obj.tenant, obj.owner = connection.tenant, "tenant"  # type: ignore[attr-defined]
        with transaction.atomic():
            siem_destination_save(destination=obj)
            self._audit(request, obj, "change" if change else "add", list(form.changed_data))

    def delete_model(self, request: HttpRequest, obj: TenantSiemDestination) -> None:
        with transaction.atomic():
            self._audit(request, obj, "delete")
            super().delete_model(request, obj)

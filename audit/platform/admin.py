"""Platform admin: the platform audit trail, read-only (the model, the database triggers and this admin all refuse
changes)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.platform.models import PlatformAuditEntry
from audit.siem import admin as siem_admin  # noqa: F401  (registers the SIEM destinations' admin)
from config.admin_mixins import PublicSiteMixin, ReadOnlyAdminMixin
from config.admin_sites import platform_site


@admin.register(PlatformAuditEntry, site=platform_site)
class PlatformAuditEntryAdmin(PublicSiteMixin, ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["seq", "timestamp", "actor", "action", "target", "tenant_schema"]
    list_filter = ["action", "tenant_schema"]
    search_fields = ["=event_id", "actor", "target", "=tenant_schema"]
    date_hierarchy = "timestamp"
    ordering = ["-seq"]
    show_full_result_count = False
    fields = ["seq", "event_id", "timestamp", "actor", "action", "target", "tenant_schema", "metadata", "prev_mac",
              "mac"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}  # no bulk delete

"""Tenant admin: the audit trail (read-only, filters, search), consents, notices, GDPR jobs and receipts.

Nothing here can change or delete an audit entry: the model refuses, the database refuses (trigger), and these
admins grant no change or delete permission to anyone.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEntry, Consent, DeletionReceipt, GdprJob, ProcessingNotice
from audit.siem import tenant_admin as siem_tenant_admin  # noqa: F401  (the tenant's SIEM destinations)
from config.admin_mixins import ReadOnlyAdminMixin, TenantSiteMixin
from config.admin_sites import tenant_site


class ReadOnlyTenantAdmin(TenantSiteMixin, ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    pass


@admin.register(AuditEntry, site=tenant_site)
class AuditEntryAdmin(ReadOnlyTenantAdmin):
    list_display = ["seq", "timestamp", "event_type", "who", "model", "status", "input_tokens", "output_tokens",
                    "latency_ms"]
    list_filter = ["event_type", "status", "model", ("redacted_at", admin.EmptyFieldListFilter)]
    search_fields = ["=event_id", "=actor", "model", "error", "personal__username"]
    date_hierarchy = "timestamp"
    ordering = ["-seq"]
    show_full_result_count = False  # counting millions of rows on every page is slow
    fields = ["seq", "event_id", "timestamp", "event_type", "actor", "user_id", "personal", "model", "input_hash",
              "output_hash", "input_tokens", "output_tokens", "latency_ms", "status", "metadata", "error",
              "redacted_at", "subject_mac", "prev_mac", "mac"]

    @admin.display(description="who")
    def who(self, obj: AuditEntry) -> str:
        return str(obj.personal.get("username") or obj.actor or "—")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}  # no bulk delete


@admin.register(ProcessingNotice, site=tenant_site)
class ProcessingNoticeAdmin(ReadOnlyTenantAdmin):
    """Versions are published from the tenant's notice text (public admin); here they are read."""

    list_display = ["version", "published_at"]
    fields = ["version", "published_at", "text"]


@admin.register(Consent, site=tenant_site)
class ConsentAdmin(ReadOnlyTenantAdmin):
    list_display = ["user", "notice", "accepted_at", "withdrawn_at"]
    list_filter = ["notice", ("withdrawn_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "user__email"]


@admin.register(GdprJob, site=tenant_site)
class GdprJobAdmin(ReadOnlyTenantAdmin):
    """Jobs are requested and followed in the compliance console (/compliance/); this is the raw view."""

    list_display = ["id", "kind", "status", "progress", "step", "subject_label", "subject_ref", "created_at",
                    "finished_at"]
    list_filter = ["kind", "status"]
    search_fields = ["=id", "subject_label", "=subject_ref"]


@admin.register(DeletionReceipt, site=tenant_site)
class DeletionReceiptAdmin(ReadOnlyTenantAdmin):
    list_display = ["job", "subject_ref", "requested_at", "completed_at", "account_action"]
    fields = ["job", "subject_ref", "requested_by_ref", "requested_at", "completed_at", "counts", "account_action"]

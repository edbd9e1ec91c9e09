"""Tenant admin: the usage dashboard (charts and the JSON behind them). Conversations stay private to their users."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest
from django_tenants.utils import get_public_schema_name

from inference.models import UsageDaily
from inference.reports import ReportAdmin
from inference.selectors import usage_series


def _on_tenant_site() -> bool:
    return getattr(connection, "schema_name", None) not in (None, get_public_schema_name())


@admin.register(UsageDaily)
class UsageAdmin(ReportAdmin):
    change_list_template = "admin/inference/usage.html"
    report_title = "Usage"
    report_url_name = "inference_usage_data"

    def report(self, days: int) -> dict[str, Any]:
        return usage_series(days=days)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _on_tenant_site() and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _on_tenant_site() and super().has_view_permission(request, obj)

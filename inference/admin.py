"""Tenant admin: the usage dashboard (charts and the JSON behind them). Conversations stay private to their users."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from config.admin_mixins import TenantSiteMixin
from config.admin_sites import tenant_site
from inference.models import UsageDaily
from inference.reports import ReportAdmin
from inference.selectors import usage_series


@admin.register(UsageDaily, site=tenant_site)
class UsageAdmin(TenantSiteMixin, ReportAdmin):
    change_list_template = "admin/inference/usage.html"
    report_title = "Usage"
    report_url_name = "inference_usage_data"

    def report(self, days: int) -> dict[str, Any]:
        return usage_series(days=days)

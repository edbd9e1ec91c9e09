"""Tenant admin: the usage dashboard (cost and tokens per day stacked by model or provider, tables per user, API
key, model, provider and day, each as CSV; the budgets with what they hold now). Conversations stay private."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest

from config.admin_mixins import TenantSiteMixin
from config.admin_sites import tenant_site
from inference.charts import stacked_bars_svg
from inference.costs import cost_by, usage_stacked, usage_total, usd
from inference.models import UsageDaily
from inference.reports import ReportAdmin, ReportQuery
from inference.selectors import usage_series

COST_COLUMNS = [("requests", "Requests"), ("errors", "Errors"), ("input_tokens", "Input tokens"),
                ("output_tokens", "Output tokens"), ("cache_read_tokens", "Cache read tokens"),
                ("cache_write_tokens", "Cache write tokens"), ("cost_micros", "Cost (micro-USD)")]
TABLES = [("day", "Day"), ("user", "User"), ("api_key", "API key"), ("model", "Model"), ("provider", "Provider")]


def budget_rows() -> list[dict[str, Any]]:
    """The tenant's active budgets with what their counters hold now (the numbers admission checks)."""
    from access.budgets import BudgetLimit, budget_counters, period_bounds, spent_key
    from access.models import Budget

    now = datetime.now(UTC)
    limits = []
    for budget in Budget.objects.filter(active=True).select_related("user", "api_key"):
        start, end = period_bounds(budget.period, now)
        limits.append(BudgetLimit(budget_id=budget.pk, key=spent_key(connection.schema_name, budget.pk, start),  # type: ignore[attr-defined]
                                  limit=budget.limit_micros, label=budget.label, period=budget.get_period_display(),
                                  period_start=start.isoformat(), resets_at=end.isoformat(), ttl=0))
    rows = []
    for limit, spent in budget_counters(limits):
        rows.append({"budget": limit.label, "period": limit.period, "limit_micros": limit.limit,
                     "spent_micros": spent, "percent": round(spent * 100 / limit.limit, 1) if limit.limit else 0,
                     "resets_at": limit.resets_at, "limit": usd(limit.limit), "spent": usd(spent)})
    return rows


@admin.register(UsageDaily, site=tenant_site)
class UsageAdmin(TenantSiteMixin, ReportAdmin):
    change_list_template = "admin/inference/usage.html"
    report_title = "Usage and cost"
    report_url_name = "inference_usage_data"

    def report(self, days: int) -> dict[str, Any]:
        return usage_series(days=days)

    def page(self, request: HttpRequest, query: ReportQuery) -> tuple[dict[str, Any], dict[str, Any]]:
        period = query.period
        stacked = usage_stacked(period=period, stack=query.stack, metric=query.metric)
        title = f"{query.metric.capitalize()} per day by {query.stack}"
        tables: dict[str, Any] = {}
        for name, header in TABLES:
            rows = cost_by(dimension=name, period=period)
            for row in rows:
                row["cost"] = usd(row["cost_micros"])
            title = "Per API key" if name == "api_key" else f"Per {header.lower()}"
            tables[name] = {"name": name, "title": title, "header": header, "rows": rows,
                            "columns": [("key", header), *COST_COLUMNS]}
        budgets = budget_rows()
        tables["budgets"] = {"title": "Budgets", "rows": budgets, "columns": [
            ("budget", "Budget"), ("period", "Period"), ("limit_micros", "Limit (micro-USD)"),
            ("spent_micros", "Spent or held now (micro-USD)"), ("percent", "Used (%)"), ("resets_at", "Resets at")]}
        total = usage_total(period=period)
        context = {"chart": stacked_bars_svg(days=stacked["days"], series=stacked["series"], metric=query.metric,
                                             title=title),
                   "chart_title": title, "total": total, "total_cost": usd(total["cost_micros"]),
                   "budgets": budgets, "cost_tables": [tables[name] for name, _h in TABLES]}
        return context, tables

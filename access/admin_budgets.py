"""Tenant admin: budgets in money (limit in USD, what is spent now) and the alerts they raised (the admin notice)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest

from access.audit_hooks import access_audit
from access.budget_rebuild import budgets_recount
from access.budgets import BudgetLimit, budget_counters, period_bounds, spent_key, usd
from access.models import Budget, BudgetAlert
from config.admin_mixins import ReadOnlyAdminMixin, TenantSiteMixin
from config.admin_sites import tenant_site


class BudgetForm(forms.ModelForm):  # type: ignore[type-arg]  # not subscriptable at run time
    limit_usd = forms.DecimalField(label="Limit (USD)", min_value=Decimal("0.000001"), max_digits=14,
                                   decimal_places=6, help_text="For example 50 or 0.25.")

    class Meta:
        model = Budget
        fields = ["scope", "user", "api_key", "period", "active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["limit_usd"].initial = Decimal(self.instance.limit_micros) / 1_000_000

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        scope = data.get("scope")
        if scope == Budget.Scope.USER and not data.get("user"):
            self.add_error("user", "Choose the user this budget is for.")
        if scope == Budget.Scope.API_KEY and not data.get("api_key"):
            self.add_error("api_key", "Choose the API key this budget is for.")
        if scope != Budget.Scope.USER:
            data["user"] = None
        if scope != Budget.Scope.API_KEY:
            data["api_key"] = None
        return data

    def save(self, commit: bool = True) -> Budget:
        self.instance.limit_micros = int(self.cleaned_data["limit_usd"] * 1_000_000)
        self.instance.user = self.cleaned_data.get("user")
        self.instance.api_key = self.cleaned_data.get("api_key")
        budget: Budget = super().save(commit=commit)
        return budget


def _counter(budget: Budget) -> int:
    start, end = period_bounds(budget.period, datetime.now(UTC))
    schema = connection.schema_name  # type: ignore[attr-defined]
    limit = BudgetLimit(budget_id=budget.pk, key=spent_key(schema, budget.pk, start), limit=budget.limit_micros,
                        label=budget.label, period=budget.period, period_start=start.isoformat(),
                        resets_at=end.isoformat(), ttl=0)
    return budget_counters([limit])[0][1]


@admin.register(Budget, site=tenant_site)
class BudgetAdmin(TenantSiteMixin):
    form = BudgetForm
    list_display = ["subject", "period", "limit", "spent_now", "used_percent", "active"]
    list_filter = ["scope", "period", "active"]
    fields = ["scope", "user", "api_key", "period", "limit_usd", "active"]

    @admin.display(description="applies to")
    def subject(self, obj: Budget) -> str:
        return obj.label

    @admin.display(description="limit", ordering="limit_micros")
    def limit(self, obj: Budget) -> str:
        return usd(obj.limit_micros)

    @admin.display(description="spent or held now")
    def spent_now(self, obj: Budget) -> str:
        return usd(_counter(obj))

    @admin.display(description="used")
    def used_percent(self, obj: Budget) -> str:
        return f"{_counter(obj) * 100 / obj.limit_micros:.1f}%" if obj.limit_micros else "-"

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # A new (or re-scoped) budget starts from what its period has already spent: the counters are rebuilt
        # from recorded usage now.
        budgets_recount(connection.schema_name)  # type: ignore[attr-defined]
        access_audit("budget_change", user=request.user, request=request,
                     metadata={"budget": obj.pk, "created": not change, "scope": obj.scope, "period": obj.period,
                               "limit_micros": obj.limit_micros, "active": obj.active})

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        access_audit("budget_change", user=request.user, request=request,
                     metadata={"budget": obj.pk, "deleted": True})
        super().delete_model(request, obj)


@admin.register(BudgetAlert, site=tenant_site)
class BudgetAlertAdmin(TenantSiteMixin, ReadOnlyAdminMixin):
    list_display = ["created_at", "budget", "threshold_label", "spent", "limit", "period_start", "emailed_to"]
    list_filter = ["threshold"]
    date_hierarchy = "created_at"

    @admin.display(description="reached", ordering="threshold")
    def threshold_label(self, obj: BudgetAlert) -> str:
        return f"{obj.threshold}%"

    @admin.display(description="spent or held")
    def spent(self, obj: BudgetAlert) -> str:
        return usd(obj.spent_micros)

    @admin.display(description="limit")
    def limit(self, obj: BudgetAlert) -> str:
        return usd(obj.limit_micros)

    @admin.display(description="e-mailed to")
    def emailed_to(self, obj: BudgetAlert) -> str:
        return ", ".join(obj.recipients) or "nobody (no administrator has an e-mail address)"

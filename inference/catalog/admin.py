"""Public-admin pages for the model catalog and the provider status (health history and breaker state)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from config.admin_mixins import PublicSiteMixin
from config.admin_sites import on_public_host, platform_site
from inference.catalog.models import CatalogModel, ModelPrice, ProviderHealthCheck, TenantUsage
from inference.catalog.selectors import usage_per_tenant
from inference.reports import ReportAdmin, ReportQuery
from tenants.platform_admin import PlatformAuditMixin


class PublicOnlyAdmin(PlatformAuditMixin):
    """The catalog is platform-wide: only the platform site may see or edit it, never a tenant admin."""


@admin.register(CatalogModel, site=platform_site)
class CatalogModelAdmin(PublicOnlyAdmin):
    audit_kind = "catalog"
    list_display = ["model_id", "display_name", "tier", "is_tier_default", "enabled", "anthropic_id", "bedrock_id",
                    "bedrock_profile", "vertex_id"]
    list_filter = ["tier", "enabled", "bedrock_profile"]
    list_editable = ["enabled"]
    search_fields = ["model_id", "display_name", "anthropic_id", "bedrock_id", "vertex_id"]
    fieldsets = [
        (None, {"fields": ["model_id", "display_name", "tier", "is_tier_default", "aliases", "enabled", "sort_order",
                           "released_at"]}),
        ("Provider model ids", {"fields": ["anthropic_id", "bedrock_id", "bedrock_profile", "vertex_id"],
                                "description": "Leave an id blank when that provider does not serve the model."}),
        ("List prices (cents per million tokens)", {"fields": ["input_price_cents_per_mtok",
                                                               "output_price_cents_per_mtok"]}),
    ]


@admin.register(ModelPrice, site=platform_site)
class ModelPriceAdmin(PublicOnlyAdmin):
    """Prices with effective dates. A price in effect is history (calls were charged with it): it can no longer be
    edited or deleted; a change is a new row with a later date."""

    audit_kind = "model_price"
    list_display = ["model", "provider_label", "effective_from", "input_usd_per_mtok", "output_usd_per_mtok",
                    "cache_read_usd_per_mtok", "cache_write_usd_per_mtok", "batch_discount_percent"]
    list_filter = ["model", "provider"]
    date_hierarchy = "effective_from"
    fields = ["model", "provider", "effective_from", "input_usd_per_mtok", "output_usd_per_mtok",
              "cache_read_usd_per_mtok", "cache_write_usd_per_mtok", "batch_discount_percent"]

    @admin.display(description="provider", ordering="provider")
    def provider_label(self, obj: ModelPrice) -> str:
        return obj.provider or "every provider"

    def _in_effect(self, obj: ModelPrice | None) -> bool:
        from django.utils import timezone

        return obj is not None and obj.pk is not None and obj.effective_from <= timezone.now()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not self._in_effect(obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and not self._in_effect(obj)


@admin.register(ProviderHealthCheck, site=platform_site)
class ProviderHealthCheckAdmin(PublicOnlyAdmin):
    audit_kind = "provider_health"
    # Few, short columns: the history stays readable next to the navigation and the filters at 1280 px.
    list_display = ["checked", "target_and_source", "status_badge", "http_status", "latency_ms", "short_detail"]
    list_display_links = ["checked"]
    list_filter = ["status", "target"]
    date_hierarchy = "checked_at"
    change_list_template = "admin/catalog/providerhealthcheck/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="checked at", ordering="checked_at")
    def checked(self, obj: ProviderHealthCheck) -> str:
        from django.utils import timezone

        return f"{timezone.localtime(obj.checked_at):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="target", ordering="target")
    def target_and_source(self, obj: ProviderHealthCheck) -> str:
        from django.utils.html import format_html

        if obj.credentials_source == "environment":
            return obj.target
        return format_html("{}<br><small>{}</small>", obj.target, obj.credentials_source)

    @admin.display(description="detail")
    def short_detail(self, obj: ProviderHealthCheck) -> str:
        return obj.detail if len(obj.detail) <= 48 else obj.detail[:47] + "…"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ProviderHealthCheck) -> str:
        from django.utils.html import format_html

        return format_html('<span class="atrium-badge atrium-badge-{}">{}</span>', obj.status, obj.status)

    def get_urls(self) -> list[Any]:
        extra = [
            path("run/", self.admin_site.admin_view(self.run_checks), name="catalog_providerhealthcheck_run"),
            path("reset/<str:target>/", self.admin_site.admin_view(self.reset_breaker),
                 name="catalog_providerhealthcheck_reset"),
        ]
        return extra + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from inference.health import provider_status

        context = {"provider_status": provider_status(), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

    def run_checks(self, request: HttpRequest) -> HttpResponse:
        from inference.health import provider_health_check_all

        if request.method != "POST" or not self.has_view_permission(request):
            return TemplateResponse(request, "admin/base_site.html", status=405)
        results = provider_health_check_all()
        up = sum(r.status == "up" for r in results)
        messages.info(request, f"Checked {len(results)} provider targets: {up} up.")
        return HttpResponseRedirect(reverse("admin:catalog_providerhealthcheck_changelist"))

    def reset_breaker(self, request: HttpRequest, target: str) -> HttpResponse:
        """GET (or a POST without confirmation) shows what a reset does and asks to confirm; the confirmed POST
        closes the breaker."""
        from inference.breaker import breaker_reset, breaker_state

        if not on_public_host(request) or not request.user.is_superuser:
            return TemplateResponse(request, "admin/base_site.html", status=403)
        if request.method not in ("GET", "POST"):
            return TemplateResponse(request, "admin/base_site.html", status=405)
        if request.method == "GET" or request.POST.get("confirm") != "yes":
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "target": target,
                       "breaker": breaker_state(target), "title": f"Reset the circuit breaker of {target}?",
                       "back": reverse("admin:catalog_providerhealthcheck_changelist")}
            return TemplateResponse(request, "admin/catalog/providerhealthcheck/reset_confirm.html", context)
        from tenants.platform_audit import platform_actor, platform_change

        with transaction.atomic():
            platform_change(actor=platform_actor(request), action="breaker_reset", target=f"breaker:{target}")
            breaker_reset(target)
        messages.info(request, f"Circuit breaker of {target} reset to closed.")
        return HttpResponseRedirect(reverse("admin:catalog_providerhealthcheck_changelist"))


@admin.register(TenantUsage, site=platform_site)
class TenantUsageAdmin(PublicSiteMixin, ReportAdmin):
    change_list_template = "admin/catalog/tenantusage/change_list.html"
    report_title = "Usage per tenant"
    report_url_name = "catalog_tenantusage_data"
    stacks = ("tenant", "model", "provider")
    default_stack = "tenant"

    def report(self, days: int) -> dict[str, Any]:
        return {"days": days, "tenants": usage_per_tenant(days)}

    def page(self, request: HttpRequest, query: ReportQuery) -> tuple[dict[str, Any], dict[str, Any]]:
        from inference.charts import stacked_bars_svg
        from inference.costs import tenant_usage_stacked, tenant_usage_table, usd

        stacked = tenant_usage_stacked(period=query.period, stack=query.stack, metric=query.metric)
        rows = tenant_usage_table(period=query.period)
        for row in rows:
            row["cost"] = usd(row["cost_micros"])
        title = f"{query.metric.capitalize()} per day by {query.stack}"
        tables = {"tenants": {"rows": rows, "columns": [
            ("name", "Tenant"), ("tenant", "Schema"), ("requests", "Requests"), ("errors", "Errors"),
            ("input_tokens", "Input tokens"), ("output_tokens", "Output tokens"), ("cost_micros", "Cost (micro-USD)")]}}
        context = {"chart": stacked_bars_svg(days=stacked["days"], series=stacked["series"], metric=query.metric,
                                             title=title), "chart_title": title,
                   "total_cost": usd(sum(r["cost_micros"] for r in rows)),
                   "total_requests": sum(r["requests"] for r in rows)}
        return context, tables

"""Tenant admin: the usage dashboard (charts and the JSON behind them). Conversations stay private to their users."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django_tenants.utils import get_public_schema_name

from inference.models import UsageDaily
from inference.selectors import usage_series


def _on_tenant_site() -> bool:
    return getattr(connection, "schema_name", None) not in (None, get_public_schema_name())


@admin.register(UsageDaily)
class UsageAdmin(admin.ModelAdmin):
    """Read-only: the usage page replaces the change list."""

    change_list_template = "admin/inference/usage.html"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _on_tenant_site() and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _on_tenant_site() and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [path("data.json", self.admin_site.admin_view(self.data_view), name="inference_usage_data"),
                *super().get_urls()]

    @staticmethod
    def _days(request: HttpRequest) -> int:
        try:
            return max(1, min(366, int(request.GET.get("days", "30"))))
        except ValueError:
            return 30

    def data_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return JsonResponse({"error": "You may not view usage."}, status=403)
        return JsonResponse(usage_series(days=self._days(request)))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        context = {**self.admin_site.each_context(request), "title": "Usage", "opts": self.model._meta,
                   "days": self._days(request), "usage": usage_series(days=self._days(request))}
        return TemplateResponse(request, self.change_list_template, context)

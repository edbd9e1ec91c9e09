"""A read-only admin page that shows a report and serves its JSON at `data.json` (usage pages)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from config.admin_mixins import ReadOnlyAdminMixin


class ReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Subclasses set `change_list_template`, `report_title` and implement `report(days)`; combine with
    TenantSiteMixin or PublicSiteMixin (listed first) to pick the site."""

    report_title = "Report"
    report_url_name = "report_data"

    def report(self, days: int) -> dict[str, Any]:
        raise NotImplementedError

    def get_urls(self) -> list[URLPattern]:
        return [path("data.json", self.admin_site.admin_view(self.data_view), name=self.report_url_name),
                *super().get_urls()]

    @staticmethod
    def days(request: HttpRequest) -> int:
        try:
            return max(1, min(366, int(request.GET.get("days", "30"))))
        except ValueError:
            return 30

    def data_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return JsonResponse({"error": "You may not view this report."}, status=403)
        return JsonResponse(self.report(self.days(request)))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        days = self.days(request)
        context = {**self.admin_site.each_context(request), "title": self.report_title, "opts": self.model._meta,
                   "days": days, "report": self.report(days)}
        return TemplateResponse(request, str(self.change_list_template), context)

"""Read-only admin report pages (the usage dashboards): a date range, a chart, tables, each table downloadable as
CSV, and the JSON behind the page at `data.json`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from config.admin_mixins import ReadOnlyAdminMixin
from inference.costs import METRICS, Period

MAX_DAYS = 366


class BadReportQuery(ValueError):
    """A date range or option the page cannot show (answered with a 400 naming it)."""


@dataclass(frozen=True)
class ReportQuery:
    period: Period
    stack: str
    metric: str

    def query_string(self, **extra: str) -> str:
        from urllib.parse import urlencode

        return urlencode({"since": self.period.since.isoformat(), "until": self.period.until.isoformat(),
                          "stack": self.stack, "metric": self.metric, **extra})


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadReportQuery(f"{name}: {value[:40]!r} is not a date (YYYY-MM-DD).") from None


def report_query(request: HttpRequest, *, stacks: tuple[str, ...], default_stack: str) -> ReportQuery:
    """The page's date range (default: the last 30 days, or `days`), stack and metric, validated."""
    today = datetime.now(UTC).date()
    params = request.GET
    if params.get("since") or params.get("until"):
        until = _date(params["until"], "until") if params.get("until") else today
        since = _date(params["since"], "since") if params.get("since") else until - timedelta(days=29)
    else:
        try:
            days = int(params.get("days", "30"))
        except ValueError:
            raise BadReportQuery("days: a whole number of days.") from None
        if not 1 <= days <= MAX_DAYS:
            raise BadReportQuery(f"days: between 1 and {MAX_DAYS}.")
        since, until = today - timedelta(days=days - 1), today
    if since > until:
        raise BadReportQuery("since: the first day must not be after the last (until).")
    if (until - since).days + 1 > MAX_DAYS:
        raise BadReportQuery(f"The range is {(until - since).days + 1} days; at most {MAX_DAYS} fit on one page.")
    stack = params.get("stack") or default_stack
    if stack not in stacks:
        raise BadReportQuery(f"stack: one of {', '.join(stacks)}.")
    metric = params.get("metric") or "cost"
    if metric not in METRICS:
        raise BadReportQuery(f"metric: one of {', '.join(METRICS)}.")
    return ReportQuery(period=Period(since=since, until=until), stack=stack, metric=metric)


def _cell(value: Any) -> Any:
    """Spreadsheets run a cell that starts with = + - @ as a formula: such text gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_response(*, rows: list[dict[str, Any]], columns: list[tuple[str, str]], filename: str) -> HttpResponse:
    """`columns`: (key in the row, header). Money columns (keys ending in _micros) also get a USD column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header: list[str] = []
    for key, title in columns:
        header.append(title)
        if key.endswith("_micros"):
            header.append(title.replace("(micro-USD)", "(USD)"))
    writer.writerow(header)
    for row in rows:
        line: list[Any] = []
        for key, _title in columns:
            value = row.get(key, "")
            line.append(_cell(value))
            if key.endswith("_micros"):
                line.append(f"{int(value or 0) / 1_000_000:.6f}")
        writer.writerow(line)
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Subclasses set `change_list_template`, `report_title`, `stacks`, implement `report(days)` (the JSON) and
    `page(request, query)` (the page's context and its tables); combine with TenantSiteMixin or PublicSiteMixin
    (listed first) to pick the site."""

    report_title = "Report"
    report_url_name = "report_data"
    stacks: tuple[str, ...] = ("model", "provider")
    default_stack = "model"

    def report(self, days: int) -> dict[str, Any]:
        raise NotImplementedError

    def page(self, request: HttpRequest, query: ReportQuery) -> tuple[dict[str, Any], dict[str, Any]]:
        """(template context, tables by name: {"rows": [...], "columns": [(key, header)]})."""
        raise NotImplementedError

    def get_urls(self) -> list[URLPattern]:
        return [path("data.json", self.admin_site.admin_view(self.data_view), name=self.report_url_name),
                *super().get_urls()]

    @staticmethod
    def days(request: HttpRequest) -> int:
        try:
            return max(1, min(MAX_DAYS, int(request.GET.get("days", "30"))))
        except ValueError:
            return 30

    def data_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return JsonResponse({"error": "You may not view this report."}, status=403)
        return JsonResponse(self.report(self.days(request)))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        try:
            query = report_query(request, stacks=self.stacks, default_stack=self.default_stack)
        except BadReportQuery as exc:
            return HttpResponse(f"Bad request: {exc}", status=400, content_type="text/plain; charset=utf-8")
        context, tables = self.page(request, query)
        if request.GET.get("format") == "csv":
            name = request.GET.get("table", "")
            if name not in tables:
                return HttpResponse(f"Bad request: table must be one of {', '.join(sorted(tables))}.", status=400,
                                    content_type="text/plain; charset=utf-8")
            return csv_response(rows=tables[name]["rows"], columns=tables[name]["columns"],
                                filename=f"{self.report_title.lower().replace(' ', '-')}-{name}-"
                                         f"{query.period.since}-{query.period.until}.csv")
        for name, table in tables.items():
            table["csv"] = "?" + query.query_string(format="csv", table=name)
        context = {**self.admin_site.each_context(request), "title": self.report_title, "opts": self.model._meta,
                   "query": query, "stacks": self.stacks, "metrics": METRICS, "tables": tables, **context}
        return TemplateResponse(request, str(self.change_list_template), context)

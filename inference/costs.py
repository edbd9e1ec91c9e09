"""Reads of recorded usage and cost (each call priced when recorded): by user, API key, model, provider and day
for a tenant, and per tenant for the platform. The dashboards, their CSV downloads and the chat's own-spend panel
share these queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.db import connection
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce
from psycopg import sql

from inference.models import UsageDaily

DIMENSIONS = {"day": "day", "user": "user__username", "api_key": "api_key", "model": "model", "provider": "provider"}
STACKS = ("model", "provider")
METRICS = ("cost", "tokens", "requests")


@dataclass(frozen=True)
class Period:
    """Whole UTC days, both ends included."""

    since: date
    until: date

    @property
    def days(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range((self.until - self.since).days + 1)]


def usage_rows(*, period: Period, user_id: int | None = None, api_key: str | None = None) -> QuerySet[UsageDaily]:
    rows = UsageDaily.objects.filter(day__gte=period.since, day__lte=period.until)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if api_key is not None:
        rows = rows.filter(api_key=api_key)
    return rows


def cost_by(*, dimension: str, period: Period, user_id: int | None = None,
            api_key: str | None = None) -> list[dict[str, Any]]:
    """Requests, errors, tokens and cost (micro-USD) grouped by one dimension (DIMENSIONS), dearest first (by day:
    oldest first)."""
    field = DIMENSIONS[dimension]
    rows = usage_rows(period=period, user_id=user_id, api_key=api_key).values(field).annotate(
        requests=Coalesce(Sum("requests"), 0), errors=Coalesce(Sum("errors"), 0),
        input_tokens=Coalesce(Sum("input_tokens"), 0), output_tokens=Coalesce(Sum("output_tokens"), 0),
        cache_read_tokens=Coalesce(Sum("cache_read_tokens"), 0),
        cache_write_tokens=Coalesce(Sum("cache_write_tokens"), 0), cost_micros=Coalesce(Sum("cost_micros"), 0))
    rows = rows.order_by(field) if dimension == "day" else rows.order_by("-cost_micros", "-requests", field)
    out = []
    for row in rows:
        key = row.pop(field)
        if dimension == "day":
            key = key.isoformat()
        elif dimension == "user" and key is None:
            key = "(deleted users)"
        elif dimension == "api_key":
            key = f"atr_{key}_…" if key else "(web chat and bearer tokens)"
        out.append({"key": str(key), **{k: int(v) for k, v in row.items()}})
    return out


def usage_total(*, period: Period, user_id: int | None = None, api_key: str | None = None) -> dict[str, int]:
    totals = usage_rows(period=period, user_id=user_id, api_key=api_key).aggregate(
        requests=Coalesce(Sum("requests"), 0), input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0), cost_micros=Coalesce(Sum("cost_micros"), 0))
    return {k: int(v) for k, v in totals.items()}


def _metric_expression(metric: str) -> Any:
    if metric == "cost":
        return Sum("cost_micros")
    if metric == "requests":
        return Sum("requests")
    return Sum(F("input_tokens") + F("output_tokens") + F("cache_read_tokens") + F("cache_write_tokens"))


def usage_stacked(*, period: Period, stack: str, metric: str, user_id: int | None = None) -> dict[str, Any]:
    """One series per model (or provider) with a value for every day of the period, for a stacked chart."""
    if stack not in STACKS or metric not in METRICS:
        raise ValueError(f"stack must be one of {STACKS} and metric one of {METRICS}")
    days = [d.isoformat() for d in period.days]
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[int]] = {}
    for row in usage_rows(period=period, user_id=user_id).values("day", stack).annotate(
            value=_metric_expression(metric)).order_by(stack, "day"):
        values = series.setdefault(str(row[stack] or "(none)"), [0] * len(days))
        values[index[row["day"].isoformat()]] += int(row["value"] or 0)
    ordered = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    return {"days": days, "metric": metric, "stack": stack,
            "series": [{"key": key, "values": values} for key, values in ordered]}


# --- the platform: every tenant's schema -----------------------------------------------------------------

def _tenants() -> list[Any]:
    from tenants.models import Tenant

    return list(Tenant.objects.exclude(schema_name="public").order_by("name"))


def tenant_usage_table(*, period: Period) -> list[dict[str, Any]]:
    """Requests, errors, tokens and cost of every tenant over the period (one query per tenant schema)."""
    rows = []
    query = ("SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), COALESCE(SUM(input_tokens), 0), "
             "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_micros), 0) FROM {}.inference_usagedaily "
             "WHERE day BETWEEN %s AND %s")
    for tenant in _tenants():
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL(query).format(sql.Identifier(tenant.schema_name)),
                           [period.since, period.until])
            requests, errors, input_tokens, output_tokens, cost = cursor.fetchone() or (0, 0, 0, 0, 0)
        rows.append({"tenant": tenant.schema_name, "name": tenant.name, "requests": int(requests),
                     "errors": int(errors), "input_tokens": int(input_tokens), "output_tokens": int(output_tokens),
                     "cost_micros": int(cost)})
    return rows


def tenant_usage_stacked(*, period: Period, stack: str, metric: str) -> dict[str, Any]:
    """Per tenant, per day (a stacked chart of the platform): stack is "tenant", "model" or "provider"."""
    if stack not in ("tenant", *STACKS) or metric not in METRICS:
        raise ValueError("unknown stack or metric")
    value = {"cost": "SUM(cost_micros)", "requests": "SUM(requests)",
             "tokens": "SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)"}[metric]
    days = [d.isoformat() for d in period.days]
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[int]] = {}
    for tenant in _tenants():
        group = sql.Literal(tenant.name) if stack == "tenant" else sql.Identifier(stack)
        query = sql.SQL("SELECT day, {group}, " + value + " FROM {schema}.inference_usagedaily "  # noqa: S608 - constant SQL
                        "WHERE day BETWEEN %s AND %s GROUP BY 1, 2").format(
            group=group, schema=sql.Identifier(tenant.schema_name))
        params: list[Any] = [period.since, period.until]
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            for day, key, total in cursor.fetchall():
                values = series.setdefault(str(key or "(none)"), [0] * len(days))
                values[index[day.isoformat()]] += int(total or 0)
    ordered = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    return {"days": days, "metric": metric, "stack": stack,
            "series": [{"key": key, "values": values} for key, values in ordered]}


def usd(micros: int) -> str:
    """Micro-USD as dollars with cents (to the hundredth of a cent below a dollar)."""
    value = micros / 1_000_000
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"

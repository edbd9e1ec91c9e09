"""The usage dashboards: tenant admin (cost stacked by model or provider, per user / API key / model / provider /
day, budgets) and the platform's usage per tenant: SVG charts, date range, CSV downloads, bad input."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum

from inference.models import UsageDaily
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db


def _traffic(client_a: Any, tenant_a: Any, make_user: Any, api_key_for: Any) -> Any:
    user = make_user(tenant_a, "power_user", username="=cmd|calc")  # a name a spreadsheet would run
    key = api_key_for(tenant_a, user)
    for model in ("claude-haiku-5-5", "claude-haiku-5-5", "claude-sonnet-5-5"):
        assert post_messages(client_a, key, body("Chart me", model=model)).status_code == 200
    return user, key


@pytest.fixture
def tenant_admin(client_a: Any, tenant_a: Any, make_user: Any, in_tenant: Any) -> Any:
    admin = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(admin)
    return client_a


def _range() -> str:
    today = datetime.now(UTC).date()
    return f"since={today - timedelta(days=6)}&until={today}"


def test_tenant_dashboard_chart_tables_and_csv(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                               api_key_for: Any, in_tenant: Any, tenant_admin: Any) -> None:
    user, key = _traffic(client_a, tenant_a, make_user, api_key_for)
    page = tenant_admin.get(f"/admin/inference/usagedaily/?{_range()}&stack=model&metric=cost")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<svg class="usage-chart"' in html and "day (UTC)" in html and "cost (USD)" in html
    legend = set(re.findall(r'<li data-series="([^"]+)"', html))
    assert {"claude-haiku-5-5", "claude-sonnet-5-5"} <= legend
    assert re.search(r'<rect [^>]*data-series="claude-sonnet-5-5"', html)
    prefix = key.split("_")[1]
    assert f"atr_{prefix}_…" in html and "=cmd|calc" in html
    by_provider = tenant_admin.get(f"/admin/inference/usagedaily/?{_range()}&stack=provider&metric=tokens")
    assert '<li data-series="anthropic"' in by_provider.content.decode()

    download = tenant_admin.get(f"/admin/inference/usagedaily/?{_range()}&format=csv&table=user")
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    assert download["Content-Disposition"].startswith('attachment; filename="usage-and-cost-user-')
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    mine = next(r for r in rows if r["User"].endswith("cmd|calc"))
    assert mine["User"] == "'=cmd|calc"  # never a formula in a spreadsheet
    with in_tenant(tenant_a):
        cost = UsageDaily.objects.filter(user=user).aggregate(c=Sum("cost_micros"))["c"]
    assert int(mine["Cost (micro-USD)"]) == cost > 0 and mine["Requests"] == "3"
    assert f"{cost / 1_000_000:.6f}" == mine["Cost (USD)"]
    days = list(csv.DictReader(io.StringIO(tenant_admin.get(
        f"/admin/inference/usagedaily/?{_range()}&format=csv&table=day").content.decode())))
    assert sum(int(r["Cost (micro-USD)"]) for r in days) >= cost


def test_the_date_range_filters(sim: Any, client_a: Any, tenant_a: Any, make_user: Any, api_key_for: Any,
                                tenant_admin: Any) -> None:
    _traffic(client_a, tenant_a, make_user, api_key_for)
    old = datetime.now(UTC).date() - timedelta(days=100)
    page = tenant_admin.get(f"/admin/inference/usagedaily/?since={old}&until={old + timedelta(days=9)}")
    html = page.content.decode()
    assert page.status_code == 200 and "No usage in this period." in html and "claude-haiku-5-5" not in html
    assert html.count("<rect") == 0


@pytest.mark.parametrize(("query", "message"), [
    ("since=2026-13-01", "since: '2026-13-01' is not a date"),
    ("since=2026-05-02&until=2026-05-01", "must not be after"),
    ("since=2024-01-01&until=2026-01-01", "at most 366"),
    ("stack=colour", "stack: one of model, provider"),
    ("metric=joy", "metric: one of cost, tokens, requests"),
    ("days=0", "days: between 1 and 366"),
    ("format=csv&table=secrets", "table must be one of"),
])
def test_bad_ranges_are_a_precise_400(tenant_admin: Any, query: str, message: str) -> None:
    response = tenant_admin.get(f"/admin/inference/usagedaily/?{query}")
    assert response.status_code == 400 and message in response.content.decode()


def test_platform_usage_per_tenant_chart_and_csv(sim: Any, client_a: Any, public_client: Any, tenant_a: Any,
                                                 make_user: Any, api_key_for: Any) -> None:
    from django.db import connection

    _traffic(client_a, tenant_a, make_user, api_key_for)
    connection.set_schema_to_public()
    operator = get_user_model().objects.create_superuser("platform-cost", "pc@example.com", "pw-Secret-123")
    public_client.force_login(operator)
    page = public_client.get(f"/admin/catalog/tenantusage/?{_range()}&stack=tenant&metric=cost")
    assert page.status_code == 200, page.status_code
    html = page.content.decode()
    assert '<svg class="usage-chart"' in html and f'<li data-series="{tenant_a.name}"' in html
    by_model = public_client.get(f"/admin/catalog/tenantusage/?{_range()}&stack=model").content.decode()
    assert '<li data-series="claude-sonnet-5-5"' in by_model
    rows = list(csv.DictReader(io.StringIO(public_client.get(
        f"/admin/catalog/tenantusage/?{_range()}&format=csv&table=tenants").content.decode())))
    alpha = next(r for r in rows if r["Schema"] == tenant_a.schema_name)
    assert int(alpha["Requests"]) >= 3 and int(alpha["Cost (micro-USD)"]) > 0

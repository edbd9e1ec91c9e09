"""inference/queries.py round-trip: each total usage_totals reads by name is the ORM's sum of that column, in the
schema asked for (another tenant's rows never count)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.db.models import Sum


def test_usage_totals_round_trip_every_column(tenant_a: Any, tenant_b: Any, in_tenant: Any, make_user: Any) -> None:
    from inference.models import UsageDaily
    from inference.queries import USAGE_TOTAL_COLUMNS, usage_totals

    since = date(2031, 1, 10)
    user = make_user(tenant_a)
    with in_tenant(tenant_a):
        # Distinct values per column, so a swapped column shows.
        UsageDaily.objects.create(user=user, day=since, model="m", provider="p", requests=3, errors=1,
                                  input_tokens=1000, output_tokens=70)
        UsageDaily.objects.create(user=None, day=since + timedelta(days=2), model="m", provider="p", requests=5,
                                  errors=2, input_tokens=20, output_tokens=9000)
        UsageDaily.objects.create(user=None, day=since - timedelta(days=1), model="m", provider="p", requests=400,
                                  errors=400, input_tokens=400, output_tokens=400)  # before `since`
        expected = UsageDaily.objects.filter(day__gte=since).aggregate(
            **{name: Sum(column) for column, name in USAGE_TOTAL_COLUMNS})
    with in_tenant(tenant_b):
        UsageDaily.objects.create(user=None, day=since, model="m", provider="p", requests=77, errors=0,
                                  input_tokens=77, output_tokens=77)
    totals = usage_totals(tenant_a.schema_name, since)
    assert vars(totals) == expected == {"requests": 8, "errors": 3, "input_tokens": 1020, "output_tokens": 9070}
    assert vars(usage_totals(tenant_a.schema_name, date(2031, 2, 1))) == dict.fromkeys(expected, 0)

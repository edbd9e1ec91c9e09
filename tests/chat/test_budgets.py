"""Budgets in money: exact hard stops (across two processes: test_budget_server.py), the 429 naming the budget
and its reset, settlement to the real cost, rebuild from recorded usage, and alert e-mails once per threshold and
period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db.models import Sum

from access.budgets import budget_counters, budgets_for, period_bounds, usd
from access.models import Budget, BudgetAlert
from inference.budgeting import max_input_tokens
from inference.catalog.pricing import max_cost_any_provider, prices_invalidate
from inference.models import UsageDaily
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db

HAIKU = "claude-haiku-5-5"


def budget_keys_clear() -> None:
    from config.redis import redis_client

    client = redis_client()
    for key in client.scan_iter("atrium:budget:*"):
        client.delete(key)


@pytest.fixture
def budgets(sim: Any) -> Any:
    prices_invalidate()
    budget_keys_clear()
    yield
    budget_keys_clear()


def _max_cost(text: str, max_tokens: int = 64, tenant: Any = None) -> int:
    """What admission reserves for body(text): the tenant's processing notice is part of the system prompt."""
    from inference.calls import with_notice

    request = body(text, model=HAIKU)
    system = with_notice(None, getattr(tenant, "processing_notice", "") or "")
    if system is not None:
        request["system"] = system
    return max_cost_any_provider(HAIKU, datetime.now(UTC), input_tokens=max_input_tokens(request),
                                 max_output_tokens=max_tokens)


def _counter(schema: str, user_id: int, prefix: str = "") -> list[int]:
    return [spent for _limit, spent in budget_counters(budgets_for(schema=schema, user_id=user_id,
                                                                    api_key_prefix=prefix))]


def test_tenant_budget_stops_exactly_and_names_itself(budgets: None, client_a: Any, tenant_a: Any, make_user: Any,
                                                       api_key_for: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    key = api_key_for(tenant_a, user)
    need = _max_cost("Spend", tenant=tenant_a)
    month = datetime.now(UTC).date().replace(day=1)

    def spent() -> int:  # the tenant's recorded spend this month (earlier tests' included)
        return int(UsageDaily.objects.filter(day__gte=month).aggregate(c=Sum("cost_micros"))["c"] or 0)

    with in_tenant(tenant_a):
        limit = spent() + 5 * need
        Budget.objects.create(scope=Budget.Scope.TENANT, period=Budget.Period.MONTHLY, limit_micros=limit)
    statuses = []
    for _ in range(40):
        sent_at = datetime.now(UTC)
        response = post_messages(client_a, key, body("Spend", model=HAIKU))
        statuses.append(response.status_code)
        with in_tenant(tenant_a):
            recorded = spent()
            # Settled to the real cost after every call: the counter the check reads is the recorded spend.
            assert _counter(tenant_a.schema_name, user.pk) == [recorded]
        if response.status_code == 429:
            break
    assert statuses[-1] == 429 and statuses.count(200) == len(statuses) - 1 >= 2
    # Exact: refused only because what is left cannot cover the call's largest possible cost.
    assert recorded <= limit and limit - recorded < need
    data = response.json()
    assert data["type"] == "error" and data["error"]["type"] == "rate_limit_error"
    message = data["error"]["message"]
    _start, resets = period_bounds("monthly", datetime.now(UTC))
    assert "the organisation's budget (per calendar month (UTC))" in message and usd(limit) in message
    assert f"resets at {resets:%Y-%m-%d} 00:00 UTC" in message
    assert 1 <= int(response["retry-after"]) <= int((resets - sent_at).total_seconds()) + 1
    with in_tenant(tenant_a):
        from audit.models import AuditEntry

        refused = AuditEntry.objects.filter(event_type="model_call_refused").latest("seq")
        assert refused.metadata["reason"] == "budget_monthly"


def test_alert_emails_once_per_threshold(budgets: None, client_a: Any, tenant_a: Any, make_user: Any,
                                         api_key_for: Any, in_tenant: Any, mailoutbox: list[Any]) -> None:
    user = make_user(tenant_a, "basic_user")
    admin = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        type(user).objects.filter(pk=user.pk).update(email="spender@example.com")
        type(admin).objects.filter(pk=admin.pk).update(email="boss@example.com")
        # Room for several calls, so spending passes 80% before the budget refuses the next call.
        limit = 6 * _max_cost("Spend", tenant=tenant_a)
        budget = Budget.objects.create(scope=Budget.Scope.USER, user=user, period=Budget.Period.DAILY,
                                       limit_micros=limit)
    key = api_key_for(tenant_a, user)
    for _ in range(40):
        if post_messages(client_a, key, body("Spend", model=HAIKU)).status_code == 429:
            break
    assert post_messages(client_a, key, body("Spend", model=HAIKU)).status_code == 429  # again: no second mail
    subjects = [m.subject for m in mailoutbox]
    assert len(subjects) == 2, subjects
    assert "has reached 80%" in subjects[0] and "is used up" in subjects[1]
    for mail in mailoutbox:
        assert {"boss@example.com", "spender@example.com"} <= set(mail.to)
        assert f"the budget of user {user.username}" in mail.subject
        assert "resets at" in mail.body and f"of {usd(limit)}" in mail.body
    with in_tenant(tenant_a):
        alerts = list(BudgetAlert.objects.filter(budget=budget).order_by("threshold"))
        assert [a.threshold for a in alerts] == [80, 100]
        assert alerts[0].spent_micros * 100 >= 80 * limit
        # Another user of the tenant is not held by this user's budget.
        other = make_user(tenant_a, "basic_user")
    assert post_messages(client_a, api_key_for(tenant_a, other), body("Free", model=HAIKU)).status_code == 200


def test_api_key_budget_holds_only_that_key(budgets: None, client_a: Any, tenant_a: Any, make_user: Any,
                                            api_key_for: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    capped, free = api_key_for(tenant_a, user), api_key_for(tenant_a, user)
    from access.models import ApiKey

    with in_tenant(tenant_a):
        key_row = ApiKey.objects.get(prefix=capped.split("_")[1])
        Budget.objects.create(scope=Budget.Scope.API_KEY, api_key=key_row, period=Budget.Period.DAILY,
                              limit_micros=_max_cost("Spend", tenant=tenant_a) + 10)
    assert post_messages(client_a, capped, body("Spend", model=HAIKU)).status_code == 200
    refused = post_messages(client_a, capped, body("Spend", model=HAIKU))
    assert refused.status_code == 429
    assert f"the budget of API key atr_{key_row.prefix}_… (per UTC day)" in refused.json()["error"]["message"]
    assert post_messages(client_a, free, body("Spend", model=HAIKU)).status_code == 200


def test_counters_rebuilt_from_recorded_usage_when_redis_lost_them(budgets: None, client_a: Any, tenant_a: Any,
                                                                   make_user: Any, api_key_for: Any,
                                                                   in_tenant: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    key = api_key_for(tenant_a, user)
    today = datetime.now(UTC).date()
    with in_tenant(tenant_a):
        Budget.objects.create(scope=Budget.Scope.USER, user=user, period=Budget.Period.MONTHLY, limit_micros=10**9)
        older = today - timedelta(days=3)
        if older.month == today.month:  # an older day of this month comes from the daily rows
            UsageDaily.objects.create(user=user, day=older, model=HAIKU, provider="anthropic", requests=1,
                                      cost_micros=777)
    for _ in range(3):
        assert post_messages(client_a, key, body("Count me", model=HAIKU)).status_code == 200
    with in_tenant(tenant_a):
        before = _counter(tenant_a.schema_name, user.pk)
        expected = UsageDaily.objects.filter(user=user, day__gte=today.replace(day=1)).aggregate(
            c=Sum("cost_micros"))["c"]
    assert before == [expected]  # the first admission built the counter from what was recorded
    budget_keys_clear()  # Redis restarted empty
    assert post_messages(client_a, key, body("Count me", model=HAIKU)).status_code == 200
    with in_tenant(tenant_a):
        expected = UsageDaily.objects.filter(user=user, day__gte=today.replace(day=1)).aggregate(
            c=Sum("cost_micros"))["c"]
        assert _counter(tenant_a.schema_name, user.pk) == [expected]


def test_max_input_tokens_is_an_upper_bound() -> None:
    text = "日本語のテキスト" * 50  # three UTF-8 bytes per character: more bytes than tokens
    bound = max_input_tokens(body(text))
    assert bound >= len(text.encode())
    image = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}]}]}
    assert max_input_tokens(image) < 2_000  # an image is billed at most ~1,600 tokens, whatever its size


def test_a_budgets_period_follows_the_utc_day_across_midnight(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                              monkeypatch: Any) -> None:
    """budgets_for builds a budget's period (bounds, counter key) once per UTC day and keeps it: the day is part of
    what it is kept by, so the first call after midnight gets the new day's (and month's) counters."""
    import types

    import access.budgets

    user = make_user(tenant_a, "basic_user")
    with in_tenant(tenant_a):
        Budget.objects.create(scope=Budget.Scope.TENANT, period="daily", limit_micros=10**9)
        Budget.objects.create(scope=Budget.Scope.USER, user=user, period="monthly", limit_micros=10**9)
        schema = tenant_a.schema_name

        def periods(at: datetime) -> list[tuple[str, str, str, str]]:
            monkeypatch.setattr(access.budgets, "time", types.SimpleNamespace(time=at.timestamp))
            return sorted((b.period, b.key.rsplit(":", 1)[1], b.period_start, b.resets_at)
                          for b in budgets_for(schema=schema, user_id=user.pk))

        before = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
        assert periods(before) == periods(before) == [
            ("daily", "20261231", "2026-12-31", "2027-01-01T00:00:00+00:00"),
            ("monthly", "20261201", "2026-12-01", "2027-01-01T00:00:00+00:00")]
        assert periods(before + timedelta(seconds=2)) == [
            ("daily", "20270101", "2027-01-01", "2027-01-02T00:00:00+00:00"),
            ("monthly", "20270101", "2027-01-01", "2027-02-01T00:00:00+00:00")]
        assert periods(before) == [  # an earlier day asked again (a clock stepped back) gets its own period
            ("daily", "20261231", "2026-12-31", "2027-01-01T00:00:00+00:00"),
            ("monthly", "20261201", "2026-12-01", "2027-01-01T00:00:00+00:00")]

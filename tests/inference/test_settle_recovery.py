"""Settlements lost with their process (killed between a call's commit and its settlement) are recovered from
recorded usage at a web process's start (inference/settle_recovery.py), each call once, on the real PostgreSQL
and Redis: the records are committed the way the writer commits them, without the settlement a kill loses."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from access.budget_rebuild import budgets_recount
from access.budgets import BUDGET, BudgetPlan, budgets_for
from access.budgets import tenant_prefix as budget_prefix
from access.quotas import (
    QUOTA,
    Limit,
    QuotaPlan,
    epoch_key,
    quota_reservations_reap,
    tenant_prefix,
    tpd_key,
)
from audit.services import AuditEvent
from config.redis import redis_client
from inference import records
from inference.admission import ADMISSION
from inference.services import UsageCount
from inference.settle_recovery import settle_recover

FAR_MS = 10**13  # a reaper's "now" past every reservation's TTL


def _wipe(schema: str) -> None:
    client = redis_client()
    for prefix in (tenant_prefix(schema), budget_prefix(schema)):
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


@pytest.fixture
def quota_tenant(tenant_a: Any, settings: Any) -> Iterator[Any]:
    """tenant_a with token quotas (organisation and per user), its Redis quota state emptied, epoch e1."""
    settings.ATRIUM_SETTLE_RECOVERY_GRACE_S = 0
    settings.ATRIUM_SETTLE_RECOVERY_MINUTES = 15
    saved = (tenant_a.tokens_per_day, tenant_a.user_tokens_per_day, tenant_a.own_user_tokens_per_day)
    tenant_a.tokens_per_day, tenant_a.user_tokens_per_day, tenant_a.own_user_tokens_per_day = 10**9, 10**8, None
    _wipe(tenant_a.schema_name)
    redis_client().set(epoch_key(tenant_a.schema_name), "e1")
    yield tenant_a
    tenant_a.tokens_per_day, tenant_a.user_tokens_per_day, tenant_a.own_user_tokens_per_day = saved
    _wipe(tenant_a.schema_name)


def _today() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


def _recover(tenant: Any) -> dict[str, tuple[int, int]]:
    return settle_recover([tenant], now=datetime.now(UTC) + timedelta(seconds=1))


def _reserve(tenant: Any, user_id: int, tokens: int) -> Any:
    schema, day = tenant.schema_name, _today()
    plan = QuotaPlan(schema=schema, day=day, tokens=tokens,
                     tpd=[Limit(tpd_key(schema, day), 10**9, "t"), Limit(tpd_key(schema, day, user_id), 10**8, "u")])
    return ADMISSION.run(QUOTA.bind(plan))[QUOTA]


def _record(tenant: Any, user_id: int, reservation: Any, tokens: int, cost: int = 0, budget: Any = None) -> Any:
    request_id = f"req_{uuid.uuid4().hex}"
    return records.CallRecord(
        tenant=tenant, request_id=request_id,
        usage=UsageCount(user_id, "claude-haiku-5-5", "anthropic", tokens - 10, 10, False, request_id=request_id,
                         day=datetime.now(UTC).date(), charged_tokens=tokens, cost_micros=cost),
        audit=AuditEvent(event_type="model_call", user_id=user_id, personal={}, request_id=request_id),
        reservation=reservation, used_tokens=tokens, settle=True, budget=budget)


def _killed_after_commit(record: Any) -> None:
    """What a SIGKILL between the commit and the settlement leaves: the records committed, nothing settled."""
    failed, committed = records._records_commit([record])
    assert failed == [] and committed == [record]


def _settled_normally(record: Any) -> None:
    assert records.records_write([record]) == []
    assert records.settle_pending()


def _counter(key: str) -> int:
    return int(redis_client().get(key) or 0)


def test_a_lost_settlement_is_applied_once_and_the_counters_end_at_recorded_usage(
        quota_tenant: Any, make_user: Any) -> None:
    tenant, schema, day = quota_tenant, quota_tenant.schema_name, _today()
    user = make_user(tenant)
    _recover(tenant)  # calls other tests left in this window, settled first: the baseline
    tenant_key, user_key = tpd_key(schema, day), tpd_key(schema, day, user.pk)
    base = _counter(tenant_key)
    settled = _record(tenant, user.pk, _reserve(tenant, user.pk, 100), 30)
    _settled_normally(settled)
    lost = [_record(tenant, user.pk, _reserve(tenant, user.pk, 100), t) for t in (40, 55)]
    for record in lost:
        _killed_after_commit(record)
    assert (_counter(tenant_key) - base, _counter(user_key)) == (30 + 200, 30 + 200)  # the lost calls' holds
    # As today's code ends: the dead calls' reservations are reaped after their TTL, their usage never arrives.
    assert quota_reservations_reap(schema=schema, now_ms=FAR_MS) == 2
    assert (_counter(tenant_key) - base, _counter(user_key)) == (30, 30)

    assert _recover(tenant) == {schema: (2, 0)}
    assert (_counter(tenant_key) - base, _counter(user_key)) == (30 + 40 + 55, 30 + 40 + 55)
    assert _recover(tenant) == {}  # a second run (another worker's start) changes nothing
    assert (_counter(tenant_key) - base, _counter(user_key)) == (125, 125)
    # A late settlement of a recovered call (a journal replay, say) does not count it again.
    records.records_write([lost[0]])
    assert records.settle_pending()
    assert (_counter(tenant_key) - base, _counter(user_key)) == (125, 125)


def test_recovered_before_the_reservation_is_reaped_the_counters_end_at_recorded_usage(
        quota_tenant: Any, make_user: Any) -> None:
    tenant, schema, day = quota_tenant, quota_tenant.schema_name, _today()
    user = make_user(tenant)
    _recover(tenant)
    user_key = tpd_key(schema, day, user.pk)
    dead, slow = (_record(tenant, user.pk, _reserve(tenant, user.pk, 100), t) for t in (70, 20))
    _killed_after_commit(dead)
    _killed_after_commit(slow)  # its process lives: its settlement is only late (Redis was failing, say)
    assert _recover(tenant) == {schema: (2, 0)}
    assert _counter(user_key) == 100 + 70 + 100 + 20  # the reservations held until their TTL, as calls in flight
    records.records_write([slow])  # the late settlement: counted already, it gives its reservation back
    assert records.settle_pending()
    assert _counter(user_key) == 100 + 70 + 20
    assert quota_reservations_reap(schema=schema, now_ms=FAR_MS) == 1  # the dead call's
    assert _counter(user_key) == 70 + 20


def test_calls_still_in_their_grace_are_left_to_their_process(quota_tenant: Any, make_user: Any,
                                                              settings: Any) -> None:
    tenant, schema, day = quota_tenant, quota_tenant.schema_name, _today()
    user = make_user(tenant)
    _recover(tenant)
    user_key = tpd_key(schema, day, user.pk)
    record = _record(tenant, user.pk, _reserve(tenant, user.pk, 100), 70)
    _killed_after_commit(record)
    settings.ATRIUM_SETTLE_RECOVERY_GRACE_S = 60
    assert _recover(tenant) == {}
    records.records_write([record])  # its live process settles it: used - reserved, once
    assert records.settle_pending()
    assert _counter(user_key) == 70
    settings.ATRIUM_SETTLE_RECOVERY_GRACE_S = 0
    assert _recover(tenant) == {}
    assert _counter(user_key) == 70


def test_counters_lost_with_redis_are_left_to_the_rebuild(quota_tenant: Any, make_user: Any) -> None:
    tenant, schema, day = quota_tenant, quota_tenant.schema_name, _today()
    user = make_user(tenant)
    _killed_after_commit(_record(tenant, user.pk, _reserve(tenant, user.pk, 100), 70))
    _wipe(schema)  # Redis came back empty: no epoch
    assert _recover(tenant) == {}
    assert redis_client().get(tpd_key(schema, day, user.pk)) is None
    assert redis_client().get(epoch_key(schema)) is None


def test_a_tenant_without_quotas_or_budgets_is_untouched(tenant_b: Any, make_user: Any, settings: Any) -> None:
    from access.quotas import Reservation

    settings.ATRIUM_SETTLE_RECOVERY_GRACE_S = 0
    saved = (tenant_b.tokens_per_day, tenant_b.user_tokens_per_day, tenant_b.own_user_tokens_per_day)
    tenant_b.tokens_per_day = tenant_b.user_tokens_per_day = tenant_b.own_user_tokens_per_day = None
    schema = tenant_b.schema_name
    _wipe(schema)
    try:
        redis_client().set(epoch_key(schema), "e1")
        user = make_user(tenant_b)
        _killed_after_commit(_record(tenant_b, user.pk, Reservation(tokens=0), 70, cost=900))
        assert _recover(tenant_b) == {}
        keys = [k for p in (tenant_prefix(schema), budget_prefix(schema)) for k in redis_client().scan_iter(f"{p}*")]
        assert keys == [epoch_key(schema).encode()]
    finally:
        tenant_b.tokens_per_day, tenant_b.user_tokens_per_day, tenant_b.own_user_tokens_per_day = saved
        _wipe(schema)


def test_a_lost_budget_settlement_rebuilds_the_budget_counters_to_recorded_cost(
        quota_tenant: Any, make_user: Any, in_tenant: Any) -> None:
    from access.models import Budget
    from access.quotas import Reservation

    tenant, schema = quota_tenant, quota_tenant.schema_name
    tenant.tokens_per_day = tenant.user_tokens_per_day = None  # money only
    user = make_user(tenant)
    with in_tenant(tenant):
        Budget.objects.create(scope=Budget.Scope.USER, user=user, period=Budget.Period.DAILY,
                              limit_micros=10**9)
        budgets_recount(schema)  # the budget's counters from recorded usage, its epoch
        limits = budgets_for(schema=schema, user_id=user.pk)
        assert len(limits) == 1
        key = limits[0].key

        def reserve() -> Any:
            applied = ADMISSION.run(BUDGET.bind(BudgetPlan(schema=schema, cost=5000, limits=limits)))[BUDGET]
            assert applied.refused is None
            return applied.reservation

        _settled_normally(_record(tenant, user.pk, Reservation(tokens=0), 30, cost=1200, budget=reserve()))
        lost = _record(tenant, user.pk, Reservation(tokens=0), 30, cost=1300, budget=reserve())
        _killed_after_commit(lost)
        assert _counter(key) == 1200 + 5000  # the dead call's largest possible cost, held for good
        assert _recover(tenant) == {schema: (0, 1)}
        assert _counter(key) == 1200 + 1300
        assert _recover(tenant) == {}
        assert _counter(key) == 2500
        records.records_write([lost])  # settled late (a replay): once
        assert records.settle_pending()
        assert _counter(key) == 2500


def test_only_todays_token_counters_are_recovered(quota_tenant: Any, make_user: Any) -> None:
    tenant, schema = quota_tenant, quota_tenant.schema_name
    user = make_user(tenant)
    _recover(tenant)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    record = _record(tenant, user.pk, _reserve(tenant, user.pk, 100), 70)
    # Recorded just before midnight: yesterday's counters admit nothing any more.
    record.usage = dataclasses.replace(record.usage, day=yesterday)
    _killed_after_commit(record)
    assert _recover(tenant) == {}
    assert redis_client().get(tpd_key(schema, f"{yesterday:%Y%m%d}", user.pk)) is None

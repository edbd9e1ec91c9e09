"""Budgets in money across two gunicorn worker processes: a burst from 12 threads never spends past the limit, and
the counter the check reads equals the recorded cost once every call is settled. (No test transaction: the
server processes must see the committed user and budget.)"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from django.db.models import Sum

from access.models import Budget
from inference.models import UsageRecord
from tests.chat.conftest import QUOTA_TENANT, body
from tests.chat.test_budgets import HAIKU, _counter, _max_cost, budget_keys_clear


def _hammer(web: Any, key: str, n: int, threads: int) -> list[Any]:
    import httpx

    url = web.url(f"{QUOTA_TENANT}.localhost") + "/v1/messages"
    payload = json.dumps(body("Burst", model=HAIKU))
    results: list[Any] = []
    lock = threading.Lock()
    todo = list(range(n))

    def worker() -> None:
        with httpx.Client(timeout=60) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    todo.pop()
                response = client.post(url, content=payload, headers={"x-api-key": key,
                                                                       "content-type": "application/json"})
                with lock:
                    results.append(response)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


def test_budget_hard_stop_is_exact_across_processes(web: Any, clean: None, committed_user: Any) -> None:
    from django_tenants.utils import schema_context

    budget_keys_clear()
    user, key = committed_user(QUOTA_TENANT, "basic_user")
    limit = 5_000
    with schema_context(QUOTA_TENANT):
        budget = Budget.objects.create(scope=Budget.Scope.USER, user=user, period=Budget.Period.DAILY,
                                       limit_micros=limit)
    try:
        responses = _hammer(web, key, 40, 12)
        ok = [r.json() for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 429]
        assert ok and refused and len(ok) + len(refused) == 40, sorted(r.status_code for r in responses)
        assert all("the budget of user" in r.json()["error"]["message"] for r in refused)

        def state() -> tuple[list[int], int, int]:
            with schema_context(QUOTA_TENANT):
                rows = UsageRecord.objects.filter(user_id=user.pk)
                return (_counter(QUOTA_TENANT, user.pk), rows.count(),
                        rows.aggregate(c=Sum("cost_micros"))["c"] or 0)

        # Records and settlements are written just after each response: wait for the last.
        deadline = time.monotonic() + 30
        while (current := state()) != ([current[2]], len(ok), current[2]) and time.monotonic() < deadline:
            time.sleep(0.1)
        counter, calls, spent = state()
        assert calls == len(ok) and counter == [spent]
        assert spent <= limit  # never past the limit, however the 12 threads and 2 workers raced
        # And no money is left that a call would fit in: the next one is refused only if it cannot fit.
        from tenants.models import Tenant

        need = _max_cost("Burst", tenant=Tenant.objects.get(schema_name=QUOTA_TENANT))
        follow = _hammer(web, key, 1, 1)[0]
        assert (follow.status_code == 429) == (limit - spent < need), (follow.status_code, limit, spent, need)
    finally:
        with schema_context(QUOTA_TENANT):
            budget.delete()
        budget_keys_clear()


def test_a_budget_added_while_both_processes_cache_none_applies_to_the_next_calls(web: Any, clean: None,
                                                                                   committed_user: Any) -> None:
    """Both workers cache "no budget applies" for this user (ATRIUM_AUTH_CACHE_S=30 in the server); a budget
    created here (another process) must stop the calls within moments, not after the cache's expiry, and its
    removal must let them through again."""
    from django_tenants.utils import schema_context

    from tests.tenants.test_cache_invalidation import eventually

    budget_keys_clear()
    user, key = committed_user(QUOTA_TENANT, "basic_user")
    warm = _hammer(web, key, 16, 4)  # 4 connections: both workers answer some of them
    assert [r.status_code for r in warm] == [200] * 16
    with schema_context(QUOTA_TENANT):
        budget = Budget.objects.create(scope=Budget.Scope.USER, user=user, period=Budget.Period.DAILY,
                                       limit_micros=1)  # below any call's cost: every call must be refused
    try:
        eventually(lambda: _hammer(web, key, 1, 1)[0].status_code == 429, "the new budget stops a call")
        after = _hammer(web, key, 16, 4)
        assert [r.status_code for r in after] == [429] * 16, "a process still admits calls past the new budget"
        assert all("the budget of user" in r.json()["error"]["message"] for r in after)
    finally:
        with schema_context(QUOTA_TENANT):
            budget.delete()
    eventually(lambda: all(r.status_code == 200 for r in _hammer(web, key, 8, 4)), "the removed budget's calls")
    budget_keys_clear()

"""The budgets that apply to a call are cached per process (access.budgets, config/tenant_cache.py): a warm call
reads no row, and any change to a budget, however it is written (here: SQL from another session, no Django code),
empties the cache at its commit, so the next calls check the new limits; an entry of one tenant never answers for
another. Exactness across two gunicorn processes: tests/chat/test_budget_server.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context

from access.budgets import budgets_for
from config import tenant_cache
from config.tenant_cache import cache_listener_ready
from tests.tenants.test_cache_invalidation import eventually, other_connection, served_from_memory


@pytest.fixture(scope="module", autouse=True)
def _listener_stopped_afterwards() -> Iterator[None]:
    yield
    tenant_cache.cache_listener_stop()


@pytest.fixture
def user_id(settings: Any, committed: None) -> Iterator[int]:
    """A committed user of alpha, with the caches on (long: only the database may empty an entry here)."""
    from django.contrib.auth import get_user_model

    settings.ATRIUM_AUTH_CACHE_S = 300
    assert cache_listener_ready(), "the cache listener did not subscribe"
    with schema_context("alpha"):
        user = get_user_model().objects.create_user(username=f"budget-cache-{uuid.uuid4().hex[:8]}")
    yield user.pk
    with schema_context("alpha"):
        get_user_model().objects.filter(pk=user.pk).delete()  # its budgets go with it (cascade)


def limits(schema: str, user_id: int) -> list[tuple[int, str]]:
    with schema_context(schema):
        return [(b.limit, b.period) for b in budgets_for(schema=schema, user_id=user_id)]


def sql(statement: str, *params: Any) -> Any:
    with other_connection() as other:  # another session: no Django signal, no service, only the trigger
        cursor = other.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def test_a_budget_added_changed_and_switched_off_elsewhere_applies_to_the_next_calls(user_id: int) -> None:
    assert served_from_memory(lambda: limits("alpha", user_id)) == []  # no budget, and that answer is cached

    [(budget_id,)] = sql("INSERT INTO alpha.access_budget (scope, user_id, period, limit_micros, active, created_at) "
                         "VALUES ('user', %s, 'daily', 5000, true, now()) RETURNING id", user_id)
    eventually(lambda: limits("alpha", user_id) == [(5000, "daily")], "the new budget is checked")
    assert served_from_memory(lambda: limits("alpha", user_id)) == [(5000, "daily")]

    sql("UPDATE alpha.access_budget SET limit_micros = 7 WHERE id = %s", budget_id)
    eventually(lambda: limits("alpha", user_id) == [(7, "daily")], "the lowered limit is checked")

    sql("UPDATE alpha.access_budget SET active = false WHERE id = %s", budget_id)
    eventually(lambda: limits("alpha", user_id) == [], "the switched-off budget is no longer checked")

    sql("UPDATE alpha.access_budget SET active = true, period = 'monthly' WHERE id = %s", budget_id)
    eventually(lambda: limits("alpha", user_id) == [(7, "monthly")], "the budget is back, monthly")
    sql("DELETE FROM alpha.access_budget WHERE id = %s", budget_id)
    eventually(lambda: limits("alpha", user_id) == [], "the deleted budget is no longer checked")


def test_an_entry_of_one_tenant_never_answers_for_another(user_id: int) -> None:
    # beta has a tenant-wide budget; alpha has none. The cache key (user id, key prefix) is the same in both.
    [(beta_budget,)] = sql("INSERT INTO beta.access_budget (scope, period, limit_micros, active, created_at) "
                           "VALUES ('tenant', 'monthly', 1234, true, now()) RETURNING id")
    try:
        eventually(lambda: limits("beta", user_id) == [(1234, "monthly")], "beta's budget")
        assert served_from_memory(lambda: limits("alpha", user_id)) == []
        assert served_from_memory(lambda: limits("beta", user_id)) == [(1234, "monthly")]
        with schema_context("beta"):
            [limit] = budgets_for(schema="beta", user_id=user_id)
        assert limit.key.startswith("atrium:budget:{beta}:")  # its counter is beta's, never alpha's
    finally:
        sql("DELETE FROM beta.access_budget WHERE id = %s", beta_budget)
    eventually(lambda: limits("beta", user_id) == [], "beta's budget deleted")
    assert limits("alpha", user_id) == []

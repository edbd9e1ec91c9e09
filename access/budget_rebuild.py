"""Rebuilding the budgets' counters from recorded usage, after Redis came back empty or a budget was added or
changed (access.budgets). Access never imports inference (docs/architecture.md): inference registers the usage
ledger's readers at start-up (`budget_readers_register`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from access.budgets import epoch_key, period_bounds, settled_key, spent_key, tenant_prefix
from access.counter_rebuild import rebuild_once, settled_add
from config.redis import redis_client

logger = logging.getLogger(__name__)

# Counters outlive their month (34 days); settled sets hold today's and yesterday's request ids (3 days).
COUNTER_TTL_S = 2937600
SETTLED_TTL_S = 259200

# (request id, user id, API key prefix, cost micro-USD) of one day's recorded calls.
RecordedCalls = Callable[[date], Iterator[tuple[str, int | None, str, int]]]
# (user id, API key prefix, cost micro-USD) totals of the days from..to (inclusive).
RecordedTotals = Callable[[date, date], Iterator[tuple[int | None, str, int]]]


def budget_rebuild(*, schema: str, calls: RecordedCalls, totals: RecordedTotals, wait_s: float = 30.0,
                   force: bool = False) -> bool:
    """Rebuild the current tenant's budget counters of the running periods from recorded usage, after Redis came
    back empty. Today's and yesterday's calls go through the settled sets (a call whose settlement races the
    rebuild counts once); older days of a month from the daily totals. One process rebuilds (a lock); the others
    wait for the new epoch. Returns True if this process rebuilt.

    `force` (a budget was added or changed): first drop the tenant's epoch, counters and settled sets, as if Redis
    had lost them, so a new budget starts from what its period has already spent. Calls in progress then settle
    at their real cost (their reservation went with the old epoch)."""
    from access.models import Budget

    def rebuild() -> bool:
        client = redis_client()
        if force:
            client.delete(epoch_key(schema))
            prefix = tenant_prefix(schema)
            stale = [k for pattern in ("b*", "settled:*") for k in client.scan_iter(f"{prefix}{pattern}")]
            if stale:
                client.delete(*stale)
        if client.exists(epoch_key(schema)):
            return False
        now = datetime.now(UTC)
        today = now.date()
        budgets = []
        for budget in Budget.objects.filter(active=True).select_related("api_key"):
            start, _end = period_bounds(budget.period, now)
            budgets.append((budget, start, spent_key(schema, budget.pk, start)))

        def matching(user_id: int | None, prefix: str, day: date) -> list[str]:
            return [key for budget, start, key in budgets if day >= start and budget.covers(user_id, prefix)]

        def add(day: date, rows: Iterable[tuple[str, int, list[str]]]) -> None:
            settled_add(settled=settled_key(schema, f"{day:%Y%m%d}"), counter_ttl_s=COUNTER_TTL_S,
                        settled_ttl_s=SETTLED_TTL_S, rows=(r for r in rows if r[1] and r[2]))

        if budgets:
            earliest = min(start for _b, start, _k in budgets)
            recent = today - timedelta(days=1)
            if earliest < recent:
                add(earliest, (("", cost, matching(user_id, prefix, earliest)) for user_id, prefix, cost in
                               totals(earliest, recent - timedelta(days=1))))
            for day in (recent, today):
                if day >= earliest:
                    add(day, ((request_id, cost, matching(user_id, prefix, day))
                              for request_id, user_id, prefix, cost in calls(day)))
        client.set(epoch_key(schema), uuid.uuid4().hex)
        if budgets:
            logger.warning("budget counters of %s rebuilt from recorded usage (Redis had lost them)", schema)
        return True

    return rebuild_once(lock=f"{tenant_prefix(schema)}rebuild", epoch=epoch_key(schema), wait_s=wait_s,
                        rebuild=rebuild)


# The usage ledger's readers (inference.records), registered by inference at start-up: access never imports
# inference (docs/architecture.md).
_readers: dict[str, Any] = {}


def budget_readers_register(*, calls: RecordedCalls, totals: RecordedTotals) -> None:
    _readers["calls"], _readers["totals"] = calls, totals


def budgets_recount(schema: str) -> None:
    """Rebuild the current tenant's counters from recorded usage now (after a budget was added or changed)."""
    if "calls" not in _readers:
        redis_client().delete(epoch_key(schema))  # the next admission rebuilds
        return
    budget_rebuild(schema=schema, calls=_readers["calls"], totals=_readers["totals"], force=True)

"""Rebuilding the budgets' counters from recorded usage, after Redis came back empty or a budget was added or
changed (access.budgets). Access never imports inference (docs/architecture.md): inference registers the usage
ledger's readers at start-up (`budget_readers_register`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from access.budgets import epoch_key, period_bounds, settled_key, spent_key, tenant_prefix
from config.redis import redis_client, redis_script

logger = logging.getLogger(__name__)

# KEYS[1]: a settled set; then counters. ARGV: n, then per call: request id, cost, number of keys, their indexes;
# a request id of '' adds without the settled set (older days' totals, long settled).
_REBUILD = """
local n = tonumber(ARGV[1])
local p = 2
for _ = 1, n do
  local id, cost, nk = ARGV[p], tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  if id == '' or redis.call('SADD', KEYS[1], id) == 1 then
    for k = 1, nk do
      local key = KEYS[tonumber(ARGV[p + 2 + k])]
      redis.call('INCRBY', key, cost)
      redis.call('EXPIRE', key, 2937600)
    end
  end
  p = p + 3 + nk
end
redis.call('EXPIRE', KEYS[1], 259200)
return 1
"""

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

    client = redis_client()
    lock = f"{tenant_prefix(schema)}rebuild"
    token = uuid.uuid4().hex
    if not client.set(lock, token, nx=True, px=int(wait_s * 1000)):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not client.exists(epoch_key(schema)):
            time.sleep(0.05)
        return False
    try:
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
            return [key for budget, start, key in budgets if day >= start and (
                budget.scope == Budget.Scope.TENANT
                or (budget.scope == Budget.Scope.USER and budget.user_id == user_id)
                or (budget.scope == Budget.Scope.API_KEY and budget.api_key is not None
                    and budget.api_key.prefix == prefix))]

        def send(settled: str, rows: list[tuple[str, int, list[str]]]) -> None:
            keys: dict[str, int] = {settled: 1}
            args: list[Any] = [len(rows)]
            for request_id, cost, targets in rows:
                args += [request_id, cost, len(targets), *[keys.setdefault(k, len(keys) + 1) for k in targets]]
            redis_script(_REBUILD)(keys=list(keys), args=args)

        if budgets:
            earliest = min(start for _b, start, _k in budgets)
            recent = today - timedelta(days=1)
            if earliest < recent:
                rows = [("", cost, matching(user_id, prefix, earliest)) for user_id, prefix, cost in
                        totals(earliest, recent - timedelta(days=1))]
                send(settled_key(schema, f"{earliest:%Y%m%d}"), [r for r in rows if r[2] and r[1]])
            for day in (recent, today):
                if day < earliest:
                    continue
                batch = [(request_id, cost, matching(user_id, prefix, day))
                         for request_id, user_id, prefix, cost in calls(day)]
                batch = [r for r in batch if r[2] and r[1]]
                for i in range(0, len(batch), 1000):
                    send(settled_key(schema, f"{day:%Y%m%d}"), batch[i:i + 1000])
        client.set(epoch_key(schema), uuid.uuid4().hex)
        if budgets:
            logger.warning("budget counters of %s rebuilt from recorded usage (Redis had lost them)", schema)
        return True
    finally:
        if client.get(lock) == token.encode():
            client.delete(lock)


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

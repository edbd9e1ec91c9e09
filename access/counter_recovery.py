"""Settlements a killed process never ran: the calls it had committed (usage in PostgreSQL) whose quota and budget
settlements were still in its memory (inference.records settles after the commit). The gateway finds them in
recorded usage at a web process's start (inference.settle_recovery) and hands them here. Access never imports
inference (docs/architecture.md).

Tokens: each lost call is added once through the same settled set its settlement would have used (a SADD guard,
as in access.counter_rebuild), so a call settled already is never counted twice. Its reservation is not known
here: it stays pending until its TTL, then the reaper gives it back (access.quotas), leaving exactly the usage.
Money: budget reservations are never reaped, so a lost budget settlement leaves an unknown hold in the counters;
the tenant's budget counters are then rebuilt from recorded usage (access.budget_rebuild, as after a budget
change), which counts every recorded call once.
When Redis has lost a tenant's counters (no epoch key) nothing is done: the next admission rebuilds them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from access.budget_rebuild import budgets_recount
from access.budgets import epoch_key as budget_epoch_key
from access.budgets import period_bounds
from access.budgets import settled_key as budget_settled_key
from access.counter_rebuild import BATCH
from access.quotas import DAY_TTL_S, epoch_key, settled_key, tpd_key
from config.redis import redis_client, redis_script

if TYPE_CHECKING:
    from tenants.models import Tenant

# KEYS[1]: the tenant's epoch key, KEYS[2]: the day's settled set, KEYS[3]: the day before's (a call admitted
# before midnight and recorded after it was settled there), then counters. ARGV: counter TTL (s), n, then per call:
# request id, amount, number of counters, their indexes. -1 when the epoch key is missing (Redis lost the counters:
# the rebuild does it), else how many calls were added.
RECOVER_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local counter_ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local p, added = 3, 0
for _ = 1, n do
  local id, amount, nk = ARGV[p], tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  if redis.call('SISMEMBER', KEYS[3], id) == 0 and redis.call('SADD', KEYS[2], id) == 1 then
    added = added + 1
    for k = 1, nk do
      local key = KEYS[tonumber(ARGV[p + 2 + k])]
      redis.call('INCRBY', key, amount)
      redis.call('EXPIRE', key, counter_ttl)
    end
  end
  p = p + 3 + nk
end
redis.call('EXPIRE', KEYS[2], counter_ttl)
return added
"""


def quota_recover(*, tenant: Tenant, calls: Iterable[tuple[str, int | None, int, date]],
                  today: date | None = None) -> int:
    """Add the tokens of today's recorded calls (request id, user id, tokens charged, day) whose settlement never
    ran to the tenant's day counters, each once (an earlier day's counters admit nothing any more, and a Redis
    rebuilt since holds today's only). Returns how many were added (0 when none was lost; -1 when the tenant's
    counters are gone and wait for their rebuild)."""
    schema = tenant.schema_name
    today = today or datetime.now(UTC).date()
    per_tenant = tenant.tokens_per_day is not None
    per_user = tenant.effective_user_tokens_per_day is not None
    if not per_tenant and not per_user:
        return 0
    by_day: dict[date, list[tuple[str, int, list[str]]]] = {}
    for request_id, user_id, tokens, day in calls:
        if tokens <= 0 or day != today:
            continue
        name = f"{day:%Y%m%d}"
        counters = ([tpd_key(schema, name)] if per_tenant else []) + (
            [tpd_key(schema, name, user_id)] if per_user and user_id is not None else [])
        if counters:
            by_day.setdefault(day, []).append((request_id, tokens, counters))
    added = 0
    for day, rows in sorted(by_day.items()):
        for start in range(0, len(rows), BATCH):
            keys: dict[str, int] = {epoch_key(schema): 1, settled_key(schema, f"{day:%Y%m%d}"): 2,
                                    settled_key(schema, f"{day - timedelta(days=1):%Y%m%d}"): 3}
            args: list[Any] = [DAY_TTL_S, 0]
            for request_id, tokens, counters in rows[start:start + BATCH]:
                args += [request_id, tokens, len(counters), *[keys.setdefault(k, len(keys) + 1) for k in counters]]
                args[1] += 1
            result = int(redis_script(RECOVER_LUA)(keys=list(keys), args=args))
            if result < 0:
                return -1
            added += result
    return added


def budget_settlements_lost(*, schema: str, calls: Iterable[tuple[str, int | None, str, int, date]]) -> int:
    """How many recorded calls (request id, user id, API key prefix, cost micro-USD, day) that an active budget of
    the current tenant covers are missing from its budget settled sets (their settlement never ran). -1 when the
    tenant's budget counters are gone (the next admission rebuilds them)."""
    from access.models import Budget

    budgets = list(Budget.objects.filter(active=True).select_related("api_key"))
    if not budgets:
        return 0
    client = redis_client()
    if not client.exists(budget_epoch_key(schema)):
        return -1

    now = datetime.now(UTC)
    starts = [period_bounds(budget.period, now)[0] for budget in budgets]

    def covered(user_id: int | None, prefix: str, day: date) -> bool:
        # As the rebuild counts them: the calls of each budget's running period.
        return any(day >= start and budget.covers(user_id, prefix)
                   for budget, start in zip(budgets, starts, strict=True))

    by_day: dict[date, list[str]] = {}
    for request_id, user_id, prefix, cost, day in calls:
        if cost > 0 and covered(user_id, prefix, day):
            by_day.setdefault(day, []).append(request_id)
    lost = 0
    for day, ids in by_day.items():
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            here = client.smismember(budget_settled_key(schema, f"{day:%Y%m%d}"), chunk)
            before = client.smismember(budget_settled_key(schema, f"{day - timedelta(days=1):%Y%m%d}"), chunk)
            lost += sum(1 for a, b in zip(here, before, strict=True) if not a and not b)
    return lost


def budget_recover(*, schema: str, calls: Iterable[tuple[str, int | None, str, int, date]]) -> int:
    """Rebuild the current tenant's budget counters from recorded usage when a recorded call's budget settlement
    was lost (budget_settlements_lost). Returns how many were lost (0: nothing was done)."""
    lost = budget_settlements_lost(schema=schema, calls=calls)
    if lost > 0:
        budgets_recount(schema)
    return lost

"""Budgets in money, exact across every web and worker process: per tenant, user and API key, per UTC day or
calendar month, in Redis, the way access.quotas does tokens.

At admission the gateway reserves the call's largest possible cost (its estimated input at the dearest input
price and every output token it may produce) against every budget that applies, in the same Lua script as the
quota (two parts of the admission composite: `budget_check` before the quota, read-only, and `budget` after it,
which re-checks and reserves), so concurrent processes can never spend past a limit. After the call is recorded,
`budget_settle_many` replaces the reservation by the call's real cost, exactly once per request id; a call refused
before it was sent upstream gets its whole reservation back (`budget_release`). When Redis comes back empty
(the epoch key is missing) access.budget_rebuild rebuilds the period's counters from recorded usage first.
Alerts at 80% and 100% are access.budget_alerts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from access.errors import QuotaExceeded
from config import thread_locals
from config.admission import Part, ScriptInput, register_part
from config.redis import redis_client, redis_evalsha, redis_script
from config.tenant_cache import TenantCache

PREFIX = "atrium:budget:"
THRESHOLDS = (80, 100)
TTL_DAILY_S = 3 * 86400
TTL_MONTHLY_S = 35 * 86400


class BudgetExceeded(QuotaExceeded):
    """A budget in money cannot cover the call's largest possible cost (429, with when it resets)."""

    def __init__(self, message: str, *, retry_after: int, limit: str, budget_id: int) -> None:
        super().__init__(message, retry_after=retry_after, limit=limit)
        self.budget_id = budget_id


class BudgetRebuildNeeded(Exception):
    """Redis has no budget epoch for this tenant (it restarted empty): rebuild the counters first."""


# --- periods and keys --------------------------------------------------------------------------------------

def period_bounds(period: str, now: datetime) -> tuple[date, datetime]:
    """(first day of the period, when the next one starts), UTC."""
    today = now.astimezone(UTC).date()
    if period == "daily":
        start = today
        end = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    else:
        start = today.replace(day=1)
        year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
        end = datetime(year, month, 1, tzinfo=UTC)
    return start, end


def tenant_prefix(schema: str) -> str:
    """Every budget key of a tenant starts with this; `{schema}` is a Redis Cluster hash tag, the one the quota
    keys carry, so a tenant's budget and quota keys share a slot (the admission parts run as one script)."""
    return f"{PREFIX}{{{schema}}}:"


def spent_key(schema: str, budget_id: int, period_start: date) -> str:
    return f"{tenant_prefix(schema)}b{budget_id}:{period_start:%Y%m%d}"


def epoch_key(schema: str) -> str:
    return f"{tenant_prefix(schema)}epoch"


def settled_key(schema: str, day: str) -> str:
    return f"{tenant_prefix(schema)}settled:{day}"


def usd(micros: int) -> str:
    value = micros / 1_000_000
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


# --- what applies to a call ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BudgetLimit:
    budget_id: int
    key: str
    limit: int
    label: str
    period: str
    period_start: str  # ISO date
    resets_at: str  # ISO datetime
    ttl: int


@dataclass(frozen=True)
class BudgetRow:
    """A budget's definition as the cache keeps it (no period: that depends on the moment of the call)."""

    budget_id: int
    limit: int
    label: str
    period: str


# The active budgets that apply to (user id, API key prefix), per schema: read on every model call, so cached per
# process and emptied by PostgreSQL at the commit of any change to a budget, a user's name or a key (the
# access_budget trigger, migration 0010; config/tenant_cache.py). An empty answer is cached too.
_budget_cache: TenantCache[tuple[BudgetRow, ...]] = TenantCache("budgets")


def _budget_rows(user_id: Any, api_key_prefix: str) -> tuple[BudgetRow, ...]:
    from django.db.models import Q

    from access.models import Budget

    subject = Q(scope=Budget.Scope.TENANT) | Q(scope=Budget.Scope.USER, user_id=user_id)
    if api_key_prefix:
        subject |= Q(scope=Budget.Scope.API_KEY, api_key__prefix=api_key_prefix)
    return tuple(BudgetRow(budget_id=budget.pk, limit=int(budget.limit_micros), period=budget.period,
                           label=f"{budget.label} ({budget.get_period_display()})")
                 for budget in Budget.objects.filter(subject, active=True).select_related("api_key", "user"))


def _period_limit(schema: str, row: BudgetRow, moment: datetime) -> BudgetLimit:
    start, end = period_bounds(row.period, moment)
    return BudgetLimit(budget_id=row.budget_id, key=spent_key(schema, row.budget_id, start), limit=row.limit,
                       label=row.label, period=row.period, period_start=start.isoformat(), resets_at=end.isoformat(),
                       ttl=TTL_DAILY_S if row.period == "daily" else TTL_MONTHLY_S)


# A budget's limit in the current period is the same all day (its period's bounds and counter key): built once per
# (schema, budget row, UTC day) instead of on every call (date arithmetic, two strftime, a frozen dataclass). The
# day is part of the key, so an entry is never served on another day; the map is emptied when it grows large.
_period_limits: dict[tuple[str, BudgetRow, int], BudgetLimit] = {}


def budgets_for(*, schema: str, user_id: Any, api_key_prefix: str = "",
                now: datetime | None = None) -> list[BudgetLimit]:
    """The active budgets of the current tenant that apply to a call of this user (and API key)."""
    # Keyed by the schema the rows are read from: an entry can only ever answer for the tenant it came from. (This
    # thread's connection read as config.thread_locals does: `connection.schema_name` costs a context-local lookup.)
    local = connections._connections  # type: ignore[attr-defined]
    db: Any = thread_locals.get(local, DEFAULT_DB_ALIAS) or connections[DEFAULT_DB_ALIAS]
    rows = _budget_cache.get_or_load(db.schema_name, (user_id, api_key_prefix),
                                     lambda: _budget_rows(user_id, api_key_prefix))
    if not rows:
        return []
    if now is not None:
        return [_period_limit(schema, row, now) for row in rows]
    seconds = time.time()
    day = int(seconds // 86400)  # the UTC day (POSIX time has no leap seconds)
    out = []
    for row in rows:
        memo_key = (schema, row, day)
        limit = _period_limits.get(memo_key)
        if limit is None:
            if len(_period_limits) >= 10_000:
                _period_limits.clear()
            limit = _period_limits[memo_key] = _period_limit(schema, row, datetime.fromtimestamp(seconds, UTC))
        out.append(limit)
    return out


@dataclass
class BudgetPlan:
    """The input of the budget parts: the reservation to make (micro-USD) against each applicable budget."""

    schema: str
    cost: int
    limits: list[BudgetLimit]


@dataclass
class BudgetReservation:
    """Money held for one call (micro-USD against each budget key); travels with the call's record."""

    schema: str = ""
    cost: int = 0
    keys: list[str] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)
    budget_ids: list[int] = field(default_factory=list)
    period_starts: list[str] = field(default_factory=list)
    epoch: str = ""
    settled: bool = False


# The budget parts of the admission script (config.admission). K.spent: the budgets' counter keys, K.epoch: the
# tenant's budget epoch key. A.cost: micro-USD to reserve and A.ttls (one per key): decimal strings, handed to Redis
# as they are (a Lua number given to redis.call is formatted by snprintf first); A.limits: one per key, A.apply:
# reserve (the `budget` part) or only check (`budget_check`). Returns {1, epoch} (proceed), {0, index, spent}
# refused, {2} rebuild first.
BUDGET_LUA = """
function(K, A)
  local epoch = redis.call('GET', K.epoch)
  if not epoch then return {2}, false end
  local cost = tonumber(A.cost)
  for i = 1, #K.spent do
    local used = tonumber(redis.call('GET', K.spent[i]) or '0')
    if used + cost > tonumber(A.limits[i]) then return {0, i, used}, false end
  end
  if A.apply then
    for i = 1, #K.spent do
      redis.call('INCRBY', K.spent[i], A.cost)
      redis.call('EXPIRE', K.spent[i], A.ttls[i])
    end
  end
  return {1, epoch}, true
end
"""


def budget_script_input(plan: BudgetPlan, *, apply: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(keys, args) of a budget part."""
    keys = {"spent": [b.key for b in plan.limits], "epoch": epoch_key(plan.schema)}
    args = {"cost": str(int(plan.cost)), "limits": [b.limit for b in plan.limits],
            "ttls": [str(b.ttl) for b in plan.limits], "apply": apply}
    return keys, args


def budget_outcome(plan: BudgetPlan, raw: Any) -> BudgetReservation:
    """The reservation the script made (or checked), BudgetExceeded naming the budget and when it resets, or
    BudgetRebuildNeeded."""
    code = int(raw[0])
    if code == 2:
        raise BudgetRebuildNeeded(plan.schema)
    if code == 1:
        epoch = raw[1].decode() if isinstance(raw[1], bytes) else str(raw[1] or "")
        return BudgetReservation(schema=plan.schema, cost=plan.cost, keys=[b.key for b in plan.limits],
                                 limits=[b.limit for b in plan.limits], budget_ids=[b.budget_id for b in plan.limits],
                                 period_starts=[b.period_start for b in plan.limits], epoch=epoch)
    budget = plan.limits[int(raw[1]) - 1]
    spent = int(raw[2])
    resets = datetime.fromisoformat(budget.resets_at)
    retry = max(1, int((resets - datetime.now(UTC)).total_seconds()) + 1)
    exc = BudgetExceeded(
        f"Budget reached: {budget.label} is {usd(budget.limit)}; {usd(spent)} of it is spent or held by calls in "
        f"progress and this request could cost up to {usd(plan.cost)}. It resets at {resets:%Y-%m-%d %H:%M} UTC.",
        retry_after=retry, limit=f"budget_{budget.period}", budget_id=budget.budget_id)
    from access.budget_alerts import alert_refused

    alert_refused(plan.schema, budget, spent)
    raise exc


@dataclass
class BudgetApplied:
    """The `budget` part's answer: the reservation, or the refusal when another process took the money between
    the check and the reservation (only possible when the parts run as separate scripts, on Redis Cluster): then
    the caller gives the quota reservation back before raising it."""

    reservation: BudgetReservation | None
    refused: BudgetExceeded | None = None


def _applied(plan: BudgetPlan, raw: Any) -> BudgetApplied:
    try:
        return BudgetApplied(budget_outcome(plan, raw))
    except BudgetExceeded as exc:
        return BudgetApplied(None, exc)


def _input(apply: bool) -> Callable[[BudgetPlan], ScriptInput]:
    def encode(plan: BudgetPlan) -> ScriptInput:
        keys, args = budget_script_input(plan, apply=apply)
        return ScriptInput(keys=keys, args=args)

    return encode


# Registered once: the gateway composes them as budget_check, quota, budget (inference.admission).
BUDGET_CHECK: Part[BudgetPlan, BudgetReservation] = register_part(
    "budget_check", lua=BUDGET_LUA, encode=_input(False), decode=budget_outcome)
BUDGET: Part[BudgetPlan, BudgetApplied] = register_part("budget", lua=BUDGET_LUA, encode=_input(True),
                                                        decode=_applied)


# --- settlement ------------------------------------------------------------------------------------------------

# Exactly once per request id, as access.quotas._SETTLE: under the epoch the money was reserved in the counters
# get (used - reserved); after Redis lost its data they get `used` (the reservation went with it). Returns the new
# value of every key, in order. A batch reads each epoch key once and gives each settled set it added to its TTL
# once, at the end (the same TTLs: nothing sees a script half run). KEYS: every key used. ARGV: n, then per call:
# request id, settled key index, epoch key index, epoch, reserved, used, number of keys, their indexes.
_SETTLE = """
local n = tonumber(ARGV[1])
local p = 2
local out = {}
local epochs = {}
local touched, order = {}, {}
for _ = 1, n do
  local id, settled, epoch_key, epoch = ARGV[p], KEYS[tonumber(ARGV[p + 1])], KEYS[tonumber(ARGV[p + 2])], ARGV[p + 3]
  local reserved, used, nk = tonumber(ARGV[p + 4]), tonumber(ARGV[p + 5]), tonumber(ARGV[p + 6])
  local fresh = redis.call('SADD', settled, id) == 1
  if fresh and not touched[settled] then
    touched[settled] = true
    order[#order + 1] = settled
  end
  local current = epochs[epoch_key]
  if current == nil then
    current = redis.call('GET', epoch_key) or false
    epochs[epoch_key] = current
  end
  local delta = used
  if current == epoch then delta = used - reserved end
  for k = 1, nk do
    local key = KEYS[tonumber(ARGV[p + 6 + k])]
    local value
    if fresh then
      value = redis.call('INCRBY', key, delta)
      if value < 0 then redis.call('SET', key, '0', 'KEEPTTL') value = 0 end
    else
      value = tonumber(redis.call('GET', key) or '0')
    end
    out[#out + 1] = value
  end
  p = p + 7 + nk
end
for i = 1, #order do
  redis.call('EXPIRE', order[i], '259200')
end
return out
"""

# KEYS: the counters, then the epoch key. ARGV: the amount to give back, then the epoch it was reserved in.
_RELEASE = """
if redis.call('GET', KEYS[#KEYS]) ~= ARGV[2] then return 0 end
for j = 1, #KEYS - 1 do
  local value = redis.call('DECRBY', KEYS[j], tonumber(ARGV[1]))
  if value < 0 then redis.call('SET', KEYS[j], 0, 'KEEPTTL') end
end
return 1
"""


def budget_settle_many(settlements: list[tuple[str, str, BudgetReservation | None, int]]) -> None:
    """Settle calls (request id, day of the call YYYYMMDD or ISO, reservation, real cost in micro-USD), each
    exactly once; then send the alerts the new totals call for."""
    keys: dict[str, int] = {}

    def index(key: str) -> int:
        return keys.setdefault(key, len(keys) + 1)

    args: list[Any] = [0]
    order: list[BudgetReservation] = []
    for request_id, day, reservation, used in settlements:
        if reservation is None or not reservation.keys or not request_id or reservation.settled:
            continue
        args += [request_id, index(settled_key(reservation.schema, day.replace("-", ""))),
                 index(epoch_key(reservation.schema)), reservation.epoch, reservation.cost, int(used),
                 len(reservation.keys), *[index(k) for k in reservation.keys]]
        args[0] += 1
        order.append(reservation)
    if not args[0]:
        return
    values = [int(v) for v in redis_evalsha(redis_script(_SETTLE), list(keys), args)]
    position = 0
    due: list[tuple[BudgetReservation, int, int]] = []
    for reservation in order:
        reservation.settled = True
        for i in range(len(reservation.keys)):
            value = values[position]
            position += 1
            if value * 100 >= reservation.limits[i] * THRESHOLDS[0]:
                due.append((reservation, i, value))
    from access.budget_alerts import alert_due

    for reservation, i, value in due:
        for threshold in THRESHOLDS:
            if value * 100 >= reservation.limits[i] * threshold:
                alert_due(reservation.schema, reservation.budget_ids[i], reservation.period_starts[i], threshold,
                          value, reservation.limits[i])


def budget_release(reservation: BudgetReservation | None) -> None:
    """The call was refused before anything was sent upstream: give the whole reservation back."""
    if reservation is None or reservation.settled or not reservation.keys:
        return
    reservation.settled = True
    redis_script(_RELEASE)(keys=[*reservation.keys, epoch_key(reservation.schema)],
                           args=[reservation.cost, reservation.epoch])


def budget_spent(limit: BudgetLimit) -> int:
    """What the budget's counter holds now: spent plus held by calls in progress (exactly what admission checks)."""
    return int(redis_client().get(limit.key) or 0)


def budget_counters(limits: Iterable[BudgetLimit]) -> list[tuple[BudgetLimit, int]]:
    """Each budget with its counter now (what admission checks), for the dashboards and the chat's panel."""
    limits = list(limits)
    if not limits:
        return []
    values = redis_client().mget([b.key for b in limits])
    return [(b, int(v or 0)) for b, v in zip(limits, values, strict=True)]

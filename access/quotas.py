"""Quotas exact across every web and worker process: requests per minute and tokens per UTC day, per tenant
and (where the tenant sets it) per user, in Redis.

One Lua function (RESERVE_LUA, the `quota` part of the gateway's admission script: config.admission) checks every
applicable limit and, only if all pass, records the request and reserves the tokens, so concurrent processes can
never admit more than a limit between a check and an increment: `quota_plan` builds its input, `quota_outcome`
reads its answer.
After the call is recorded, `quota_settle_many` refunds the unused part of the reservation (or charges the
overrun), exactly once per request id; `quota_release` returns the whole reservation of a call refused before it
was sent upstream. When Redis comes back empty, `quota_rebuild` rebuilds the day's token counters from recorded
usage before anything is admitted (a missing epoch key tells).

Requests per minute is a sliding 60-second window (a sorted set of request ids), not a fixed minute, so a burst
straddling a minute boundary cannot get twice the limit.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from access.errors import QuotaExceeded
from config.admission import ScriptInput, register_part
from config.redis import redis_client, redis_script

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from tenants.models import Tenant

logger = logging.getLogger(__name__)

PREFIX = "atrium:quota:"
WINDOW_S = 60

# The quota part of the gateway's admission script (config.admission; the gateway composes it with the breakers
# in one round trip). K.rpm: the sliding-window keys, K.tpd: the day's token keys, K.epoch: the tenant's epoch
# key (when there are day keys). A.now_ms, A.member (unique per call), A.tokens, A.rpm_limits, A.tpd_limits (one
# per key). Returns {0, index, retry_ms} on refusal (index: 1-based over rpm then tpd; retry_ms -1 for a day
# limit), {1, epoch} when admitted, {2} when the day counters must first be rebuilt (the epoch key is missing:
# Redis lost its data; quota_rebuild); only an admission lets the next parts run.
RESERVE_LUA = """
function(K, A)
  local now, tokens = tonumber(A.now_ms), tonumber(A.tokens)
  local n_rpm, n_tpd = #K.rpm, #K.tpd
  local epoch = ''
  if n_tpd > 0 then
    epoch = redis.call('GET', K.epoch)
    if not epoch then return {2}, false end
  end
  local window = 60000
  for i = 1, n_rpm do
    local limit = tonumber(A.rpm_limits[i])
    redis.call('ZREMRANGEBYSCORE', K.rpm[i], '-inf', now - window)
    if redis.call('ZCARD', K.rpm[i]) >= limit then
      local oldest = redis.call('ZRANGE', K.rpm[i], 0, 0, 'WITHSCORES')
      local retry = window
      if oldest[2] then retry = tonumber(oldest[2]) + window - now end
      return {0, i, retry}, false
    end
  end
  for j = 1, n_tpd do
    local used = tonumber(redis.call('GET', K.tpd[j]) or '0')
    if used + tokens > tonumber(A.tpd_limits[j]) then return {0, n_rpm + j, -1}, false end
  end
  for i = 1, n_rpm do
    redis.call('ZADD', K.rpm[i], now, A.member)
    redis.call('PEXPIRE', K.rpm[i], window + 1000)
  end
  for j = 1, n_tpd do
    redis.call('INCRBY', K.tpd[j], tokens)
    redis.call('EXPIRE', K.tpd[j], 172800)
  end
  return {1, epoch}, true
end
"""

# Settles calls exactly once each, whatever is retried or replayed: a call's request id goes into its tenant's
# settled set of the day, and only the call that added it changes the counters. Under the epoch its tokens were
# reserved in, the counters get (used - reserved); after Redis lost its data (another epoch: the reservation went
# with it), they get `used`. quota_rebuild adds recorded calls through the same set, so a call is counted once
# whether its settlement or the rebuild gets there first.
# KEYS: every key used. ARGV: n, then per call: request id, settled key index, epoch key index, epoch, reserved,
# used, number of day keys, their indexes.
_SETTLE = """
local n = tonumber(ARGV[1])
local p = 2
for _ = 1, n do
  local id, settled, epoch_key, epoch = ARGV[p], KEYS[tonumber(ARGV[p + 1])], KEYS[tonumber(ARGV[p + 2])], ARGV[p + 3]
  local reserved, used, nk = tonumber(ARGV[p + 4]), tonumber(ARGV[p + 5]), tonumber(ARGV[p + 6])
  if redis.call('SADD', settled, id) == 1 then
    redis.call('EXPIRE', settled, 172800)
    local delta = used
    if redis.call('GET', epoch_key) == epoch then delta = used - reserved end
    for k = 1, nk do
      local key = KEYS[tonumber(ARGV[p + 6 + k])]
      if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0) end
      redis.call('EXPIRE', key, 172800)
    end
  end
  p = p + 7 + nk
end
return 1
"""

# quota_rebuild's part: KEYS: settled set, then day keys. ARGV: n, then per recorded call: request id, tokens,
# number of day keys, their indexes (into KEYS).
_REBUILD = """
local n = tonumber(ARGV[1])
local p = 2
for _ = 1, n do
  local id, tokens, nk = ARGV[p], tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  if redis.call('SADD', KEYS[1], id) == 1 then
    for k = 1, nk do
      local key = KEYS[tonumber(ARGV[p + 2 + k])]
      redis.call('INCRBY', key, tokens)
      redis.call('EXPIRE', key, 172800)
    end
  end
  p = p + 3 + nk
end
redis.call('EXPIRE', KEYS[1], 172800)
return 1
"""


# KEYS: day keys, then the epoch key. ARGV: one delta per day key (may be negative), then the epoch the deltas
# belong to: nothing changes when the epoch moved on (the counters were rebuilt without this reservation). Never
# lets a counter go below zero.
_ADJUST = """
if redis.call('GET', KEYS[#KEYS]) ~= ARGV[#ARGV] then return 0 end
for j = 1, #KEYS - 1 do
  local value = redis.call('INCRBY', KEYS[j], tonumber(ARGV[j]))
  if value < 0 then redis.call('SET', KEYS[j], 0, 'KEEPTTL') end
end
return 1
"""


class QuotaRebuildNeeded(Exception):
    """Redis has no epoch for this tenant (it restarted empty): the day's counters must be rebuilt first."""


@dataclass
class Reservation:
    """Tokens held for one call. `settled` makes settle/release idempotent."""

    tokens: int
    day_keys: list[str] = field(default_factory=list)
    settled: bool = False
    schema: str = ""
    epoch: str = ""  # the tenant's quota epoch the tokens were reserved in (see _SETTLE)
    day: str = ""


def _day(now: datetime) -> str:
    return now.strftime("%Y%m%d")


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


def tenant_prefix(schema: str) -> str:
    """Every quota key of a tenant starts with this."""
    return f"{PREFIX}{schema}:"


def rpm_key(schema: str, user_id: Any | None = None) -> str:
    return f"{tenant_prefix(schema)}rpm" if user_id is None else f"{tenant_prefix(schema)}u{user_id}:rpm"


def tpd_key(schema: str, day: str, user_id: Any | None = None) -> str:
    return f"{tenant_prefix(schema)}tpd:{day}" if user_id is None else f"{tenant_prefix(schema)}u{user_id}:tpd:{day}"


class Limit(NamedTuple):
    key: str
    limit: int
    label: str


def _limits(tenant: Tenant, user: User) -> tuple[list[Limit], list[Limit]]:
    schema = tenant.schema_name
    rpm: list[Limit] = []
    tpd: list[Limit] = []
    if tenant.requests_per_minute is not None:
        rpm.append(Limit(rpm_key(schema), tenant.requests_per_minute, "the organisation's requests per minute"))
    # Per-user limits: the platform's, or the tenant's own when stricter (Tenant.effective_*).
    user_rpm = tenant.effective_user_requests_per_minute
    if user_rpm is not None:
        rpm.append(Limit(rpm_key(schema, user.pk), user_rpm, "your requests per minute"))
    day = _day(datetime.now(UTC))
    if tenant.tokens_per_day is not None:
        tpd.append(Limit(tpd_key(schema, day), tenant.tokens_per_day, "the organisation's tokens per day"))
    user_tpd = tenant.effective_user_tokens_per_day
    if user_tpd is not None:
        tpd.append(Limit(tpd_key(schema, day, user.pk), user_tpd, "your tokens per day"))
    return rpm, tpd


@dataclass
class QuotaPlan:
    """One reservation's input to the quota part (RESERVE_LUA): the limits that apply and the tokens to hold."""

    schema: str
    day: str
    tokens: int
    rpm: list[Limit] = field(default_factory=list)
    tpd: list[Limit] = field(default_factory=list)
    now_ms: int = 0
    member: str = ""  # this call's entry in the request windows

    def __post_init__(self) -> None:
        self.now_ms = self.now_ms or int(time.time() * 1000)
        self.member = self.member or uuid.uuid4().hex


def epoch_key(schema: str) -> str:
    return f"{tenant_prefix(schema)}epoch"


def settled_key(schema: str, day: str) -> str:
    return f"{tenant_prefix(schema)}settled:{day}"


def quota_plan(*, tenant: Tenant, user: User, tokens: int) -> QuotaPlan:
    rpm, tpd = _limits(tenant, user)
    return QuotaPlan(schema=tenant.schema_name, day=_day(datetime.now(UTC)), tokens=int(tokens), rpm=rpm, tpd=tpd)


def _quota_input(plan: QuotaPlan) -> ScriptInput:
    keys: dict[str, str | list[str]] = {"rpm": [x.key for x in plan.rpm], "tpd": [x.key for x in plan.tpd]}
    if plan.tpd:
        keys["epoch"] = epoch_key(plan.schema)
    return ScriptInput(keys=keys, args={"now_ms": plan.now_ms, "member": plan.member, "tokens": plan.tokens,
                                        "rpm_limits": [x.limit for x in plan.rpm],
                                        "tpd_limits": [x.limit for x in plan.tpd]})


def quota_outcome(plan: QuotaPlan, result: Any) -> Reservation:
    """The reservation RESERVE_LUA granted, or QuotaExceeded (with retry_after seconds) naming the limit;
    QuotaRebuildNeeded when Redis lost the tenant's counters."""
    if int(result[0]) == 2:
        raise QuotaRebuildNeeded(plan.schema)
    if int(result[0]) == 1:
        epoch = result[1].decode() if isinstance(result[1], bytes) else str(result[1] or "")
        return Reservation(tokens=plan.tokens if plan.tpd else 0, day_keys=[x.key for x in plan.tpd],
                           schema=plan.schema, epoch=epoch, day=plan.day)
    index, retry_ms = int(result[1]) - 1, int(result[2])
    limits = plan.rpm + plan.tpd
    hit = limits[index]
    if index < len(plan.rpm):
        retry = max(1, (retry_ms + 999) // 1000)
        raise QuotaExceeded(f"Rate limit reached: {hit.label} is {hit.limit}. Retry in {retry} s.",
                            retry_after=retry, limit="requests_per_minute")
    raise QuotaExceeded(f"Token budget reached: {hit.label} is {hit.limit} (this request needs up to "
                        f"{plan.tokens}). It resets at 00:00 UTC.",
                        retry_after=_seconds_to_midnight(datetime.now(UTC)), limit="tokens_per_day")


# Registered with the admission module: the gateway composes it with the breakers (inference.admission).
QUOTA = register_part("quota", lua=RESERVE_LUA, encode=_quota_input, decode=quota_outcome)


def quota_settle_many(settlements: list[tuple[str, Reservation, int]]) -> None:
    """Settle calls (request id, reservation, tokens used) in one script call, each exactly once (_SETTLE): safe
    to retry after a Redis error, and to replay. A call is only settled after its usage is committed."""
    keys: dict[str, int] = {}

    def index(key: str) -> int:
        return keys.setdefault(key, len(keys) + 1)

    args: list[Any] = [0]
    for request_id, reservation, used_tokens in settlements:
        if not reservation.day_keys or not request_id:
            continue
        args += [request_id, index(settled_key(reservation.schema, reservation.day)),
                 index(epoch_key(reservation.schema)), reservation.epoch, reservation.tokens, int(used_tokens),
                 len(reservation.day_keys), *[index(k) for k in reservation.day_keys]]
        args[0] += 1
    if args[0]:
        redis_script(_SETTLE)(keys=list(keys), args=args)


def quota_release(reservation: Reservation) -> None:
    """The call was refused before anything was sent upstream: give the whole reservation back. Only for calls
    that leave no usage record (a recorded call is settled by the recorder, exactly once)."""
    if reservation.settled or not reservation.day_keys:
        return
    reservation.settled = True
    args = [-reservation.tokens] * len(reservation.day_keys)
    redis_script(_ADJUST)(keys=[*reservation.day_keys, epoch_key(reservation.schema)],
                          args=[*args, reservation.epoch])


def quota_rebuild(*, tenant: Tenant, recorded: Callable[[str], Iterator[tuple[str, int | None, int]]],
                  wait_s: float = 30.0) -> bool:
    """Rebuild the tenant's token counters of the day from recorded usage, after Redis came back empty.

    `recorded(day)` yields (request id, user id, tokens charged) of the day's recorded calls (the gateway passes
    the usage ledger's reader: access does not read inference's tables). One process rebuilds (a Redis lock);
    the others wait for the new epoch. Calls recorded meanwhile are settled through the same settled set, so
    each counts once. Returns True if this process rebuilt.
    """
    client = redis_client()
    schema = tenant.schema_name
    lock = f"{tenant_prefix(schema)}rebuild"
    token = uuid.uuid4().hex
    if not client.set(lock, token, nx=True, px=int(wait_s * 1000)):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not client.exists(epoch_key(schema)):
            time.sleep(0.05)
        return False
    try:
        if client.exists(epoch_key(schema)):
            return False
        day = _day(datetime.now(UTC))
        tenant_key = tpd_key(schema, day) if tenant.tokens_per_day is not None else None
        per_user = tenant.effective_user_tokens_per_day is not None
        batch: list[tuple[str, int | None, int]] = []

        def send() -> None:
            keys: dict[str, int] = {settled_key(schema, day): 1}
            args: list[Any] = [len(batch)]
            for request_id, user_id, tokens in batch:
                day_keys = [k for k in (tenant_key, tpd_key(schema, day, user_id)
                                        if per_user and user_id is not None else None) if k]
                args += [request_id, tokens, len(day_keys),
                         *[keys.setdefault(k, len(keys) + 1) for k in day_keys]]
            redis_script(_REBUILD)(keys=list(keys), args=args)
            batch.clear()

        for row in recorded(datetime.now(UTC).date().isoformat()):
            batch.append(row)
            if len(batch) >= 1000:
                send()
        if batch:
            send()
        client.set(epoch_key(schema), uuid.uuid4().hex)
        logger.warning("quota counters of %s rebuilt from recorded usage (Redis had lost them)", schema)
        return True
    finally:
        if client.get(lock) == token.encode():
            client.delete(lock)


def quota_tokens_used_today(*, tenant: Tenant, user: User | None = None) -> int:
    day = _day(datetime.now(UTC))
    key = tpd_key(tenant.schema_name, day, None if user is None else user.pk)
    return int(redis_client().get(key) or 0)

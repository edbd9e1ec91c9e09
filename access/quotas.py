"""Quotas exact across every web and worker process: requests per minute and tokens per UTC day, per tenant
and (where the tenant sets it) per user, in Redis.

One Lua function (RESERVE_LUA, run by the gateway's admission script) checks every applicable limit and, only if
all pass, records the request and reserves the tokens, so concurrent processes can never admit more than a limit
between a check and an increment: `quota_plan` builds its arguments, `quota_outcome` reads its answer.
After the call `quota_settle` refunds the unused part of the reservation (or charges the overrun);
`quota_release` returns the whole reservation when the call failed.

Requests per minute is a sliding 60-second window (a sorted set of request ids), not a fixed minute, so a burst
straddling a minute boundary cannot get twice the limit.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from access.errors import QuotaExceeded
from config.redis import redis_client, redis_script

PREFIX = "atrium:quota:"
WINDOW_S = 60

# A Lua function, so the gateway can run it in the same script as its breaker check (one Redis round trip).
# K: n_rpm window keys, then n_tpd day keys. A: now_ms, member, tokens, n_rpm, then the n_rpm limits, then the
# n_tpd limits. Returns {0, index, retry_ms} on refusal (index: 1-based over rpm then tpd), {1} when admitted.
RESERVE_LUA = """
local function quota_reserve(K, A)
  local now = tonumber(A[1])
  local member = A[2]
  local tokens = tonumber(A[3])
  local n_rpm = tonumber(A[4])
  local window = 60000
  for i = 1, n_rpm do
    local limit = tonumber(A[4 + i])
    redis.call('ZREMRANGEBYSCORE', K[i], '-inf', now - window)
    if redis.call('ZCARD', K[i]) >= limit then
      local oldest = redis.call('ZRANGE', K[i], 0, 0, 'WITHSCORES')
      local retry = window
      if oldest[2] then retry = tonumber(oldest[2]) + window - now end
      return {0, i, retry}
    end
  end
  for j = n_rpm + 1, #K do
    local used = tonumber(redis.call('GET', K[j]) or '0')
    if used + tokens > tonumber(A[4 + j]) then return {0, j, -1} end
  end
  for i = 1, n_rpm do
    redis.call('ZADD', K[i], now, member)
    redis.call('PEXPIRE', K[i], window + 1000)
  end
  for j = n_rpm + 1, #K do
    redis.call('INCRBY', K[j], tokens)
    redis.call('EXPIRE', K[j], 172800)
  end
  return {1}
end
"""

# KEYS: day keys. ARGV: one delta per key (may be negative). Never lets a counter go below zero.
_ADJUST = """
for j = 1, #KEYS do
  local value = redis.call('INCRBY', KEYS[j], tonumber(ARGV[j]))
  if value < 0 then redis.call('SET', KEYS[j], 0, 'KEEPTTL') end
end
return 1
"""


@dataclass
class Reservation:
    """Tokens held for one call. `settled` makes settle/release idempotent."""

    tokens: int
    day_keys: list[str] = field(default_factory=list)
    settled: bool = False


def _day(now: datetime) -> str:
    return now.strftime("%Y%m%d")


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


def _limits(tenant: Any, user: Any) -> tuple[list[tuple[str, int, str]], list[tuple[str, int, str]]]:
    schema = tenant.schema_name
    rpm: list[tuple[str, int, str]] = []
    tpd: list[tuple[str, int, str]] = []
    if tenant.requests_per_minute is not None:
        rpm.append((f"{PREFIX}{schema}:rpm", tenant.requests_per_minute, "the organisation's requests per minute"))
    # Per-user limits: the platform's, or the tenant's own when stricter (Tenant.effective_*).
    user_rpm = tenant.effective_user_requests_per_minute
    if user_rpm is not None:
        rpm.append((f"{PREFIX}{schema}:u{user.pk}:rpm", user_rpm, "your requests per minute"))
    day = _day(datetime.now(UTC))
    if tenant.tokens_per_day is not None:
        tpd.append((f"{PREFIX}{schema}:tpd:{day}", tenant.tokens_per_day, "the organisation's tokens per day"))
    user_tpd = tenant.effective_user_tokens_per_day
    if user_tpd is not None:
        tpd.append((f"{PREFIX}{schema}:u{user.pk}:tpd:{day}", user_tpd, "your tokens per day"))
    return rpm, tpd


@dataclass
class QuotaPlan:
    """The keys and arguments of one reservation (RESERVE_LUA), and how to read its answer (quota_outcome)."""

    keys: list[str]
    args: list[Any]
    tokens: int
    limits: list[tuple[str, int, str]]  # rpm then tpd: (key, limit, label)
    n_rpm: int


def quota_plan(*, tenant: Any, user: Any, tokens: int) -> QuotaPlan:
    rpm, tpd = _limits(tenant, user)
    keys = [k for k, _, _ in rpm] + [k for k, _, _ in tpd]
    args: list[Any] = [int(time.time() * 1000), uuid.uuid4().hex, int(tokens), len(rpm)]
    args += [limit for _, limit, _ in rpm] + [limit for _, limit, _ in tpd]
    return QuotaPlan(keys=keys, args=args, tokens=int(tokens), limits=rpm + tpd, n_rpm=len(rpm))


def quota_outcome(plan: QuotaPlan, result: Any) -> Reservation:
    """The reservation RESERVE_LUA granted, or QuotaExceeded (with retry_after seconds) naming the limit."""
    if int(result[0]) == 1:
        return Reservation(tokens=plan.tokens if plan.keys else 0, day_keys=plan.keys[plan.n_rpm:])
    index, retry_ms = int(result[1]) - 1, int(result[2])
    _key, limit, label = plan.limits[index]
    if index < plan.n_rpm:
        retry = max(1, (retry_ms + 999) // 1000)
        raise QuotaExceeded(f"Rate limit reached: {label} is {limit}. Retry in {retry} s.",
                            retry_after=retry, limit="requests_per_minute")
    raise QuotaExceeded(f"Token budget reached: {label} is {limit} (this request needs up to {plan.tokens}). "
                        f"It resets at 00:00 UTC.", retry_after=_seconds_to_midnight(datetime.now(UTC)),
                        limit="tokens_per_day")


def quota_settle(reservation: Reservation, used_tokens: int) -> None:
    """Charge what the call really used: refund the rest of the reservation (or charge an overrun)."""
    quota_settle_many([(reservation, used_tokens)])


def quota_settle_many(settlements: list[tuple[Reservation, int]]) -> None:
    """Settle several reservations with one script call (the per-key deltas summed)."""
    deltas: dict[str, int] = {}
    for reservation, used_tokens in settlements:
        if reservation.settled:
            continue
        reservation.settled = True
        delta = int(used_tokens) - reservation.tokens
        for key in reservation.day_keys if delta else ():
            deltas[key] = deltas.get(key, 0) + delta
    deltas = {key: delta for key, delta in deltas.items() if delta}
    if deltas:
        redis_script(_ADJUST)(keys=list(deltas), args=list(deltas.values()))


def quota_release(reservation: Reservation) -> None:
    """The call failed before using anything: give the whole reservation back."""
    quota_settle(reservation, 0)


def quota_tokens_used_today(*, tenant: Any, user: Any | None = None) -> int:
    day = _day(datetime.now(UTC))
    key = f"{PREFIX}{tenant.schema_name}:tpd:{day}" if user is None else \
        f"{PREFIX}{tenant.schema_name}:u{user.pk}:tpd:{day}"
    return int(redis_client().get(key) or 0)

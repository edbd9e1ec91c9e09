"""Circuit breaker per provider target and credential scope, its state in Redis so every process shares it.

A breaker is named `<target>` for the platform's own credentials and `<target>@<scope>` for a tenant's
(`ProviderTarget.breaker_name`): a tenant's bad key or its own account's rate limit opens only its scope's breaker.

States: closed (calls flow), open (calls skipped without a network call until the cool-down ends), half-open
(one process holds a short probe lease and sends one real request; success closes, failure re-opens).
Each transition is one Lua script, so concurrent processes never disagree about the state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from config.redis import redis_client, redis_script

PREFIX = "atrium:breaker:"

# A Lua function, so the gateway can run it in the same script as its quota reservation (one round trip).
# key: the breaker hash; now, probe_ttl: seconds.
# Returns 1 allow (clean: no recent failure), 3 allow (closed, some failures), 2 allow as the probe, 0 skip.
ALLOW_LUA = """
local function breaker_allow(key, now, probe_ttl)
  local state = redis.call('HGET', key, 'state')
  if not state then return 1 end
  if state == 'closed' then return 3 end
  if state == 'open' then
    local until_ = tonumber(redis.call('HGET', key, 'open_until') or '0')
    if now < until_ then return 0 end
  end
  local lease = tonumber(redis.call('HGET', key, 'probe_until') or '0')
  if now < lease then return 0 end
  redis.call('HSET', key, 'state', 'half_open', 'probe_until', now + probe_ttl)
  return 2
end
"""
_ALLOW = ALLOW_LUA + "return breaker_allow(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"

# KEYS[1]; ARGV: now, threshold, cooldown, force(1 = open now), reason. Returns the new state.
_FAILURE = """
local now = tonumber(ARGV[1])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('HSET', KEYS[1], 'last_failure_at', now, 'last_reason', ARGV[5])
if ARGV[4] == '1' or state == 'half_open' or failures >= tonumber(ARGV[2]) then
  if state ~= 'open' then redis.call('HSET', KEYS[1], 'opened_at', now) end
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', now + tonumber(ARGV[3]), 'probe_until', 0)
  return 'open'
end
if not redis.call('HGET', KEYS[1], 'state') then redis.call('HSET', KEYS[1], 'state', 'closed') end
return state
"""

# KEYS[1]. Closed with no failures is the absence of the hash.
_SUCCESS = """
redis.call('DEL', KEYS[1])
return 'closed'
"""

SKIP, ALLOW_CLEAN, PROBE, ALLOW = 0, 1, 2, 3


@dataclass(frozen=True)
class BreakerState:
    target: str
    state: str
    failures: int
    open_until: float
    last_reason: str
    opened_at: float | None


def breaker_key(target: str) -> str:
    return PREFIX + target


def breaker_allow(target: str) -> int:
    """ALLOW_CLEAN / ALLOW (closed), PROBE (this caller is the half-open probe) or SKIP (open: do not call).

    After ALLOW_CLEAN a success needs no write (nothing to reset), which saves a round trip per request.
    """
    args = [time.time(), settings.ATRIUM_BREAKER_PROBE_TTL_S]
    return int(redis_script(_ALLOW)(keys=[breaker_key(target)], args=args))


def breaker_record_failure(target: str, *, reason: str = "", force_open: bool = False) -> str:
    """Count a failure; opens after ATRIUM_BREAKER_FAILURES in a row, at once when probing or when forced."""
    result = redis_script(_FAILURE)(
        keys=[breaker_key(target)],
        args=[time.time(), settings.ATRIUM_BREAKER_FAILURES, settings.ATRIUM_BREAKER_COOLDOWN_S,
              "1" if force_open else "0", reason[:200]],
    )
    return result.decode() if isinstance(result, bytes) else str(result)


def breaker_record_success(target: str) -> None:
    redis_script(_SUCCESS)(keys=[breaker_key(target)])


def breaker_reset(target: str | None = None) -> None:
    """Forget breaker state: one target, or all of them (operators, tests)."""
    client = redis_client()
    if target is not None:
        client.delete(breaker_key(target))
        return
    keys = list(client.scan_iter(match=PREFIX + "*", count=500))
    if keys:
        client.delete(*keys)


def breaker_state(target: str) -> BreakerState:
    raw: dict[Any, Any] = redis_client().hgetall(breaker_key(target))
    data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()}
    state = data.get("state", "closed")
    open_until = float(data.get("open_until") or 0)
    if state == "open" and time.time() >= open_until:
        state = "half_open"  # the next request will probe
    return BreakerState(
        target=target,
        state=state,
        failures=int(data.get("failures") or 0),
        open_until=open_until,
        last_reason=data.get("last_reason", ""),
        opened_at=float(data["opened_at"]) if data.get("opened_at") else None,
    )


def breaker_scopes(target: str) -> list[BreakerState]:
    """The breakers of the tenants' own credential scopes on this target (`<target>@<scope>`), for the status
    page; the platform scope's is `breaker_state(target)`."""
    client = redis_client()
    names = sorted((k.decode() if isinstance(k, bytes) else k)[len(PREFIX):]
                   for k in client.scan_iter(match=f"{PREFIX}{target}@*", count=500))
    return [breaker_state(name) for name in names]

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
from typing import Any, NamedTuple

from django.conf import settings

from config.admission import ScriptInput, register_part
from config.redis import redis_client, redis_script
from config.settings_once import setting_number

# Breakers are shared by every tenant using the same provider account, so they are not a tenant's: all of them
# carry one hash tag, `{breakers}`, and live in one Redis Cluster slot (the admission script asks several at once).
PREFIX = "atrium:breaker:{breakers}:"

# One breaker's admission. key: the breaker hash; now, probe_ttl: seconds.
# Returns 1 allow (clean: no recent failure), 3 allow (closed, some failures), 2 allow as the probe, 0 skip.
_ALLOW_FN = """
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
_ALLOW = _ALLOW_FN + "return breaker_allow(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"

# The breakers part of the gateway's admission script (config.admission), run after the quota granted the call:
# K.targets: the breaker keys of the targets serving the model, in the router's order; A.now, A.probe_ttl
# (seconds). Asks each in turn up to the first one that may be called and returns their codes (the router uses
# these answers instead of asking again).
ADMIT_LUA = """
function(K, A)
""" + _ALLOW_FN.replace("local function", "  local function") + """
  local codes = {}
  for j, key in ipairs(K.targets) do
    local code = breaker_allow(key, tonumber(A.now), tonumber(A.probe_ttl))
    codes[j] = code
    if code ~= 0 then break end
  end
  return codes, true
end
"""


class BreakerCheck(NamedTuple):
    """The targets (by key, in the router's order) and the breaker name of each, to ask at admission. (A
    NamedTuple: one is built per call.)"""

    targets: list[tuple[str, str]]  # (target key, breaker name)
    now: float = 0.0
    probe_ttl: float = 0.0


def _admit_input(check: BreakerCheck) -> ScriptInput:
    return ScriptInput(keys={"targets": [breaker_key(name) for _key, name in check.targets]},
                       args={"now": check.now or time.time(),
                             "probe_ttl": check.probe_ttl or setting_number("ATRIUM_BREAKER_PROBE_TTL_S")})


def _admit_outcome(check: BreakerCheck, result: Any) -> dict[str, int]:
    """The breaker answers by target key, for the targets asked (the rest are asked by the router)."""
    return {key: int(code) for (key, _name), code in zip(check.targets, list(result or []), strict=False)}


BREAKERS = register_part("breakers", lua=ADMIT_LUA, encode=_admit_input, decode=_admit_outcome)

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

"""What the quota and budget rebuilds share (access.quotas.quota_rebuild, access.budget_rebuild): one process
rebuilds a tenant's counters under a Redis lock while the others wait for its new epoch, and recorded calls are
added through a settled set, so a call whose settlement races the rebuild counts once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from config.redis import redis_client, redis_script

# KEYS[1]: a settled set; then counters. ARGV: counter TTL (s), settled set TTL (s), n, then per call: request id,
# amount, number of counters, their indexes (into KEYS). A request id of '' adds without the settled set (totals of
# days long settled).
SETTLED_ADD_LUA = """
local counter_ttl, settled_ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local p = 4
for _ = 1, n do
  local id, amount, nk = ARGV[p], tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  if id == '' or redis.call('SADD', KEYS[1], id) == 1 then
    for k = 1, nk do
      local key = KEYS[tonumber(ARGV[p + 2 + k])]
      redis.call('INCRBY', key, amount)
      redis.call('EXPIRE', key, counter_ttl)
    end
  end
  p = p + 3 + nk
end
redis.call('EXPIRE', KEYS[1], settled_ttl)
return 1
"""

BATCH = 1000  # calls per script call: one script holds Redis for its whole run


def rebuild_once(*, lock: str, epoch: str, wait_s: float, rebuild: Callable[[], bool]) -> bool:
    """Run `rebuild` in the one process that takes the tenant's rebuild lock; the others wait (up to `wait_s`)
    until the epoch key it sets appears. Returns what `rebuild` returned, or False in a process that waited."""
    client = redis_client()
    token = uuid.uuid4().hex
    if not client.set(lock, token, nx=True, px=int(wait_s * 1000)):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not client.exists(epoch):
            time.sleep(0.05)
        return False
    try:
        return rebuild()
    finally:
        if client.get(lock) == token.encode():
            client.delete(lock)


def settled_add(*, settled: str, rows: Iterable[tuple[str, int, list[str]]], counter_ttl_s: int,
                settled_ttl_s: int) -> None:
    """Add each recorded call (request id, amount, its counters) once: only if its request id enters `settled`
    now (a settlement that got there first already counted it)."""
    batch: list[tuple[str, int, list[str]]] = []

    def send() -> None:
        keys: dict[str, int] = {settled: 1}
        args: list[Any] = [counter_ttl_s, settled_ttl_s, len(batch)]
        for request_id, amount, counters in batch:
            args += [request_id, amount, len(counters), *[keys.setdefault(k, len(keys) + 1) for k in counters]]
        redis_script(SETTLED_ADD_LUA)(keys=list(keys), args=args)
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            send()
    if batch:
        send()

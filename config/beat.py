"""Celery beat's scheduler (settings.CELERY_BEAT_SCHEDULER). Imported by beat only, once Django is set up."""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from typing import Any

from django.conf import settings
from tenant_schemas_celery.db_scheduler import TenantAwareDatabaseScheduler

from config.redis import redis_client, redis_script

logger = logging.getLogger("atrium.beat")

LOCK_KEY = "atrium:beat:lock"

# KEYS[1] lock; ARGV: holder, ttl_ms. Take the lock when free, extend it when this holder has it. 1: held.
_HOLD = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""

# KEYS[1] lock; ARGV[1] holder. Delete only our own lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class PlatformBeatScheduler(TenantAwareDatabaseScheduler):
    """tenant-schemas-celery's database scheduler, reading periodic tasks from the public schema only, and
    sending nothing unless this beat holds the platform's beat lock in Redis.

    Atrium's schedule is the platform's (settings.CELERY_BEAT_SCHEDULE, stored by django-celery-beat in the public
    schema); entries without `tenant_schemas` fan out to every tenant when due. The stock scheduler also scans each
    tenant schema for a table of its own; django-celery-beat is a shared app, so a tenant's search path falls
    through to the public table, every task is seen twice and beat refuses to start ("duplicate periodic task
    name").

    The lock (ATRIUM_BEAT_LOCK_TTL_S, renewed at least three times per TTL) makes a second beat, started by mistake
    or kept as a standby, wait instead of sending every periodic task a second time; when the holder dies its lock
    expires and the standby takes over, re-reading the schedule (with its last-run times) from the database.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock_holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock_held = False
        super().__init__(*args, **kwargs)

    def get_tenant_schema_names(self, exclude_schemas: list[str]) -> list[str]:
        return []

    def enabled_models(self) -> list[Any]:
        """The stored entries, as tenant-schemas-celery 5.0.0 reads them, except that an entry meant for every tenant
        (its `_all_tenants_only` header) keeps no schema of its own. The library stamps each entry with the schema it
        was read from (`_schema_name`: "public" here, where all are stored); a fan-out entry then reached every
        tenant with "public" in its headers, and its task ran in the public schema once per tenant instead of in
        each tenant's (retention, export expiry and batch results expiry never ran for a tenant). Without the stamp,
        each message takes the schema that `apply_entry` switches to for its tenant (`headers_with_schema`); the
        entry itself, with no schema, is read and saved in the public schema, where it is stored."""
        models = super().enabled_models()
        for task in models:
            headers = json.loads(task.headers or "{}")
            if headers.get("_all_tenants_only") and "_schema_name" in headers:
                del headers["_schema_name"]
                task.headers = json.dumps(headers)
        return models

    def _lock_ttl_s(self) -> float:
        return float(settings.ATRIUM_BEAT_LOCK_TTL_S)

    def _hold_lock(self) -> bool:
        try:
            held = bool(redis_script(_HOLD)(keys=[LOCK_KEY], args=[self._lock_holder, int(self._lock_ttl_s() * 1000)]))
        except Exception:  # Redis unreachable: assume another beat may hold it; send nothing until it answers.
            logger.warning("beat lock: Redis unreachable, not sending periodic tasks", exc_info=True)
            held = False
        if held and not self._lock_held:
            logger.info("beat lock acquired; this beat sends periodic tasks", extra={"holder": self._lock_holder})
            # The previous holder may have sent entries since this process last read them: start again from the
            # database's last-run times rather than this process's memory.
            self._initial_read = True
            self._heap = None
        elif not held and self._lock_held:
            logger.warning("beat lock lost; standing by", extra={"holder": self._lock_holder})
        elif not held and not hasattr(self, "_standby_logged"):
            self._standby_logged = True
            logger.info("beat lock held by another beat; standing by", extra={"holder": self._lock_holder})
        self._lock_held = held
        return held

    def tick(self, *args: Any, **kwargs: Any) -> float:
        renew_every = self._lock_ttl_s() / 3
        if not self._hold_lock():
            return renew_every
        delay = float(super().tick(*args, **kwargs))
        if delay == 0:
            # Something was sent: write its last-run time now, so a standby taking over does not send it again.
            self.sync()
        return min(delay, renew_every)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock_held:
                try:
                    redis_script(_RELEASE)(keys=[LOCK_KEY], args=[self._lock_holder])
                except Exception:  # the lock expires by itself
                    logger.warning("beat lock: could not release", exc_info=True)
                self._lock_held = False


def beat_lock_holder() -> str | None:
    """Who holds the beat lock now (host:pid:nonce), or None: for operators and tests."""
    value = redis_client().get(LOCK_KEY)
    return value.decode() if isinstance(value, bytes) else value

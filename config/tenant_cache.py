"""Per-process caches of database rows that PostgreSQL itself invalidates, at commit, in every process.

The hot path of an API call reads rows that change rarely (the API key, its user and permissions, the user's
consent, the budgets that apply); reading them on every call costs database round trips that dominate the
gateway's overhead (bench/overhead.py). They are cached in each process, and the database tells every process
when to forget them:

- a statement trigger on each cached table runs `pg_notify('atrium_cache', <schema>)` (`notify_trigger_sql`,
  attached by the owning app's migration). PostgreSQL delivers a notification only when its transaction commits,
  and for every way of writing: the admin, services, `QuerySet.update()`, raw SQL, GDPR jobs;
- one daemon thread per process LISTENs on that channel (its own connection) and drops the cached entries of that
  schema.

Correctness rules:
- the cache serves entries only while the listener is connected: before it has subscribed, after its connection
  broke, and while it reconnects, every lookup reads the database (and the cache is emptied on reconnect);
- a value read from the database is stored only if no invalidation for its schema arrived since the read began
  (a per-schema generation number), so a read racing a commit can never store the pre-commit row;
- every entry also expires after `ATRIUM_AUTH_CACHE_S` seconds, a bound should a notification ever be missed.

Expiry without a stampede (issue 18, the c=32 tail): an entry's life is the TTL less up to 10 % at random, so the
entries loaded together at a process's start (and the same key in every worker) do not all expire in the same
instant; and when an entry has expired, one thread reloads it while the others keep answering from it for at most
`STALE_GRACE_S` more. That is sound because only time ends an entry that way: an invalidation removes the entry
itself, so nothing it voided can be served. A miss (no entry at all) is loaded once too: the other threads wait
for that load (at most `MISS_WAIT_S`) instead of each sending the same query.

What remains is the delivery delay (a notification reaches the other processes a few milliseconds after the
commit). With a pooler in transaction mode (PgBouncer) LISTEN does not work: point `ATRIUM_CACHE_LISTEN_URL` at
the database directly or set `ATRIUM_AUTH_CACHE_S=0`, which turns these caches off (the test settings do).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from django.conf import settings

from config.settings_once import setting_number

logger = logging.getLogger(__name__)

CHANNEL = "atrium_cache"
APPLICATION_NAME = "atrium-cache-listener"
V = TypeVar("V")

# Created (or replaced) by every migration that attaches a trigger, in the schema it migrates.
NOTIFY_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION atrium_cache_notify() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""


def notify_trigger_sql(table: str, update_of: list[str] | None = None) -> tuple[str, str]:
    """(forward, backward) SQL for a statement trigger that announces every change of `table`.

    `update_of` limits UPDATEs to those columns (a key's last-use timestamp must not empty the cache).
    """
    update = f"UPDATE OF {', '.join(update_of)}" if update_of else "UPDATE"
    name = f"{table}_atrium_cache"
    forward = (f"{NOTIFY_FUNCTION_SQL}\nCREATE TRIGGER {name} AFTER INSERT OR {update} OR DELETE OR TRUNCATE "
               f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION atrium_cache_notify();")
    return forward, f"DROP TRIGGER IF EXISTS {name} ON {table};"


# This process's id, kept by a fork hook rather than asked of the kernel on every lookup (a system call each).
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def cache_ttl() -> float:
    return setting_number("ATRIUM_AUTH_CACHE_S")


class _Listener:
    """The process's LISTEN connection and the per-schema generation numbers it bumps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.connected = False
        self.generation: dict[str, int] = {}
        self.epoch = 0  # bumped on every (re)connection and disconnection: invalidates everything
        self.caches: list[TenantCache[Any]] = []
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def ensure_started(self) -> bool:
        """Start the listener in this process if needed; True when the caches may serve entries."""
        if self.pid != _pid:
            with self.lock:
                if self.pid != _pid:  # a new process (a forked worker): nothing inherited is trusted
                    self.pid = _pid
                    self.forget_all(connected=False)
                    self.thread = threading.Thread(target=self._run, name="atrium-cache-listener", daemon=True)
                    self.thread.start()
        return self.connected

    def forget_all(self, *, connected: bool) -> None:
        """Empty every cache and void every read in flight (hold `lock`): on a (re)connection, a disconnection,
        in a new process and on stop, a notification may have been missed."""
        self.connected = connected
        self.epoch += 1
        for cache in self.caches:
            cache.clear()

    def stamp(self, schema: str) -> tuple[int, int]:
        return self.epoch, self.generation.get(schema, 0)

    def invalidate(self, schema: str | None) -> None:
        with self.lock:
            if schema is None:
                self.epoch += 1
            else:
                self.generation[schema] = self.generation.get(schema, 0) + 1
            for cache in self.caches:
                cache.forget_schema(schema)

    def _connect(self) -> Any:
        """The listening connection: ATRIUM_CACHE_LISTEN_URL, else the default database's own parameters."""
        import psycopg

        url = str(getattr(settings, "ATRIUM_CACHE_LISTEN_URL", "") or "")
        params: dict[str, Any] = {}
        if not url:
            from django.db import connections

            params = dict(connections["default"].get_connection_params())
            for name in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
                params.pop(name, None)
        # How operators (and the tests) find it in pg_stat_activity.
        params["application_name"] = APPLICATION_NAME
        return psycopg.connect(url, autocommit=True, **params)

    def _run(self) -> None:
        backoff = 0.5
        pid = os.getpid()
        while not self.stopping.is_set() and pid == os.getpid():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    with self.lock:
                        self.forget_all(connected=True)  # anything stored before the subscription is suspect
                    backoff = 0.5
                    while not self.stopping.is_set():
                        for notify in conn.notifies(timeout=5.0):
                            self.invalidate(notify.payload or None)
                        conn.execute("SELECT 1")  # notices a dead connection while all is quiet
            except Exception as exc:  # any failure: stop serving from the caches, then reconnect
                logger.warning("cache invalidation listener disconnected (%s); caches bypassed until it is back",
                               type(exc).__name__)
            with self.lock:
                self.forget_all(connected=False)
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)


_listener = _Listener()


# How long past its expiry an entry still answers while one thread reloads it (a reload that fails or hangs
# longer than this stops being waited for: then every thread reads the database, as before).
STALE_GRACE_S = 5.0
# How long a thread waits for another's load of a missing entry before reading the database itself.
MISS_WAIT_S = 1.0
JITTER = 0.1  # an entry lives ttl * (1 - JITTER * random())


class TenantCache(Generic[V]):
    """A bounded map of (schema, key) -> value, emptied per schema by the listener and expiring after a TTL."""

    def __init__(self, name: str, ttl: Callable[[], float] = cache_ttl, max_entries: int = 20_000) -> None:
        self.name = name
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: dict[tuple[str, Hashable], tuple[float, V]] = {}
        # The keys being loaded by some thread: the event set when that load ends, the stamp it began under, and
        # when it began.
        self._loading: dict[tuple[str, Hashable], tuple[threading.Event, tuple[int, int], float]] = {}
        self._loading_lock = threading.Lock()
        with _listener.lock:
            _listener.caches.append(self)

    def get_or_load(self, schema: str, key: Hashable, load: Callable[[], V | None]) -> V | None:
        """The cached value, or `load()`'s (stored when it is not None and nothing changed meanwhile)."""
        ttl = self.ttl()
        if ttl <= 0 or not _listener.ensure_started():
            return load()
        entry = (schema, key)
        hit = self._data.get(entry)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._loading_lock:
            claim = self._loading.get(entry)
            mine = claim is None
            if claim is None:
                claim = self._loading[entry] = (threading.Event(), _listener.stamp(schema), now)
        loading, stamp, began = claim
        if not mine:
            if hit is not None and now - hit[0] < STALE_GRACE_S:
                return hit[1]  # expired by time only (an invalidation removes the entry): one thread reloads it
            # Missing, or expired longer ago than the grace by a load just begun (the first calls after a quiet
            # spell, one per thread): wait for that one load. A reload under way for longer than the grace is not
            # waited for, as before; nor a load begun before an invalidation (it will not be stored).
            if ((hit is None or now - began < STALE_GRACE_S) and stamp == _listener.stamp(schema)
                    and loading.wait(MISS_WAIT_S)):
                again = self._data.get(entry)
                if again is not None and again[0] > time.monotonic():
                    return again[1]
            return load()  # the other load failed, found nothing, was voided or is slow: read it here
        try:
            value = load()
            if value is not None:
                life = ttl * (1.0 - JITTER * random.random())  # noqa: S311 - a spread, not a secret
                self.put(schema, key, value, stamp, time.monotonic() + life)
            return value
        finally:
            with self._loading_lock:
                self._loading.pop(entry, None)
            loading.set()

    def peek(self, schema: str, key: Hashable) -> V | None:
        """The cached value, or None (not cached, expired, or the cache may not serve now)."""
        if self.ttl() <= 0 or not _listener.ensure_started():
            return None
        hit = self._data.get((schema, key))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, schema: str, key: Hashable, value: V, stamp: tuple[int, int], expires: float) -> None:
        with _listener.lock:
            if not _listener.connected or _listener.stamp(schema) != stamp:
                return  # an invalidation arrived while the value was being read: it may be stale
            if len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[(schema, key)] = (expires, value)

    def update(self, schema: str, key: Hashable, change: Callable[[V], V]) -> bool:
        """Rewrite a present entry in place (after this process's own write of a column that sends no
        notification), `change` running under the cache's lock; a missing entry stays missing (False)."""
        with _listener.lock:
            hit = self._data.get((schema, key))
            if hit is None:
                return False
            self._data[(schema, key)] = (hit[0], change(hit[1]))
            return True

    def forget_schema(self, schema: str | None) -> None:
        if schema is None:
            self._data.clear()
            return
        for entry in [k for k in self._data if k[0] == schema]:
            self._data.pop(entry, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def cache_listener_stop(timeout: float = 10.0) -> None:
    """Stop this process's listener and forget every cached value (tests, before their database is dropped)."""
    thread = _listener.thread
    _listener.stopping.set()
    if thread is not None and thread.is_alive():
        thread.join(timeout)  # it notices within the notifications' 5 s wait
    with _listener.lock:
        _listener.pid = 0
        _listener.thread = None
        _listener.forget_all(connected=False)
    _listener.stopping.clear()


def cache_listener_ready(timeout: float = 10.0) -> bool:
    """Start this process's listener and wait until it is subscribed (tests, and warm-up at start)."""
    deadline = time.monotonic() + timeout
    while not _listener.ensure_started():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def cache_listener_boot(timeout: float = 2.0) -> bool:
    """At a web worker's boot, when any of these caches is on: subscribe before the first request.

    Until the listener has subscribed every lookup reads the database, so a worker whose first requests came in a
    burst had each of its threads load the same rows at once (issue 18: 16 loads of one tenant, 23-65 ms each, in
    the first second of a c=32 load). Bounded: a database slow to answer delays the boot by at most `timeout`,
    after which the caches stay bypassed until the listener is up, as before."""
    if cache_ttl() <= 0 and float(getattr(settings, "ATRIUM_TENANT_CACHE_S", 0) or 0) <= 0:
        return False  # every cache is off (the host cache's TTL is ATRIUM_TENANT_CACHE_S, the others' this one)
    return cache_listener_ready(timeout)

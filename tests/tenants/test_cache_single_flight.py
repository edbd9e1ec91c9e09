"""The per-process caches' expiry (config/tenant_cache.py, issue 18: the c=32 tail): an expired entry is reloaded
by one thread while the others answer from it, a missing one (or one expired longer ago than the grace) is loaded
once, an invalidation is never served stale, and entries loaded together do not expire together."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config import tenant_cache
from config.tenant_cache import TenantCache, cache_listener_ready


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for something another thread does (not a speed limit: a bound on waiting)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module", autouse=True)
def _listener_stopped_afterwards() -> Iterator[None]:
    """The listener holds a connection to the test database; let it go before anything may drop that database."""
    yield
    tenant_cache.cache_listener_stop()


@pytest.fixture
def caches_on(settings: Any, committed: None) -> None:
    settings.ATRIUM_AUTH_CACHE_S = 300
    assert cache_listener_ready(), "the cache listener did not subscribe"


def _threads(count: int, target: Callable[[], Any]) -> list[Any]:
    """Run `target` in `count` threads at once; their results."""
    import threading

    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        results[index] = target()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_an_expired_entry_is_reloaded_by_one_thread_while_the_others_serve_it(caches_on: None) -> None:
    """Issue 18: at c=32 every busy thread used to reload the same expired entry (a spike every TTL)."""
    import threading

    cache: TenantCache[str] = TenantCache(f"flight-{uuid.uuid4().hex[:6]}", ttl=lambda: 0.05)
    cache.get_or_load("alpha", "k", lambda: "old")
    time.sleep(0.1)  # expired
    loads: list[int] = []
    release = threading.Event()

    def slow_load() -> str:
        loads.append(1)
        release.wait(5)  # the database is slow: the others must not queue behind this read
        return "new"

    reloader = threading.Thread(target=lambda: cache.get_or_load("alpha", "k", slow_load))
    reloader.start()
    eventually(lambda: bool(loads), "one thread began the reload")
    answers = _threads(8, lambda: cache.get_or_load("alpha", "k", slow_load))
    release.set()
    reloader.join(5)
    assert len(loads) == 1
    assert answers == ["old"] * 8
    assert cache.get_or_load("alpha", "k", lambda: "unused") == "new"


def test_a_missing_entry_is_loaded_once_for_the_threads_that_want_it(caches_on: None) -> None:
    import threading

    cache: TenantCache[str] = TenantCache(f"miss-{uuid.uuid4().hex[:6]}")
    loads: list[int] = []
    lock = threading.Lock()

    def load() -> str:
        with lock:
            loads.append(1)
        time.sleep(0.2)
        return "v"

    assert _threads(8, lambda: cache.get_or_load("alpha", "k", load)) == ["v"] * 8
    assert len(loads) == 1


def test_an_invalidation_during_a_reload_is_never_served_stale(caches_on: None) -> None:
    """While one thread reloads an expired entry the others may answer from it, but not once it is invalidated:
    an invalidation (a revocation, a role change) takes effect at once."""
    import threading

    cache: TenantCache[str] = TenantCache(f"stale-{uuid.uuid4().hex[:6]}", ttl=lambda: 0.05)
    cache.get_or_load("alpha", "k", lambda: "old")
    cache.get_or_load("beta", "k", lambda: "beta's")
    time.sleep(0.1)
    started = threading.Event()
    release = threading.Event()

    def slow_load() -> str:
        started.set()
        release.wait(5)
        return "read before the invalidation"

    reloader = threading.Thread(target=lambda: cache.get_or_load("alpha", "k", slow_load))
    reloader.start()
    assert started.wait(5)
    assert cache.get_or_load("alpha", "k", lambda: "unused") == "old"  # expired by time: served meanwhile
    tenant_cache._listener.invalidate("alpha")
    answers = _threads(4, lambda: cache.get_or_load("alpha", "k", lambda: "fresh"))
    release.set()
    reloader.join(5)
    assert answers == ["fresh"] * 4
    assert cache.peek("alpha", "k") != "read before the invalidation"  # voided by the invalidation: not stored
    assert cache.get_or_load("alpha", "k", lambda: "fresh") == "fresh"


def test_entries_loaded_together_do_not_expire_together(caches_on: None) -> None:
    cache: TenantCache[int] = TenantCache(f"jitter-{uuid.uuid4().hex[:6]}", ttl=lambda: 100.0)
    for number in range(50):
        cache.get_or_load("alpha", number, lambda n=number: n)
    expiries = [expires for expires, _value in cache._data.values()]
    assert len(expiries) == 50
    assert max(expiries) - min(expiries) > 1.0  # spread over up to 10 % of the TTL, not all in one instant
    assert max(expiries) <= time.monotonic() + 100.0


def test_a_workers_boot_subscribes_before_its_first_request(settings: Any, committed: None) -> None:
    """Until the listener subscribes every lookup reads the database: a worker's first burst of requests used to
    load the same rows in each thread at once. The boot (serve.worker_init, gunicorn's post_worker_init) now
    waits for the subscription when a cache is on, and starts nothing when they are all off."""
    tenant_cache.cache_listener_stop()
    settings.ATRIUM_AUTH_CACHE_S = 0
    settings.ATRIUM_TENANT_CACHE_S = 0
    assert tenant_cache.cache_listener_boot() is False
    assert tenant_cache._listener.thread is None and not tenant_cache._listener.connected
    settings.ATRIUM_AUTH_CACHE_S = 300
    assert tenant_cache.cache_listener_boot() is True
    assert tenant_cache._listener.connected


def test_an_entry_expired_longer_ago_than_the_grace_is_loaded_once(caches_on: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The first calls after a quiet spell find the entry expired for longer than the grace: they wait for one
    load, as for a missing entry, instead of each thread reading the database (and opening its connection)."""
    import threading

    monkeypatch.setattr(tenant_cache, "STALE_GRACE_S", 0.05)
    ttl = [0.05]
    cache: TenantCache[str] = TenantCache(f"quiet-{uuid.uuid4().hex[:6]}", ttl=lambda: ttl[0])
    cache.get_or_load("alpha", "k", lambda: "old")
    time.sleep(0.2)  # expired, and longer ago than the grace
    ttl[0] = 300.0
    loads: list[int] = []
    lock = threading.Lock()

    def load() -> str:
        with lock:
            loads.append(1)
        time.sleep(0.2)
        return "new"

    assert _threads(8, lambda: cache.get_or_load("alpha", "k", load)) == ["new"] * 8
    assert len(loads) == 1


def test_a_reload_under_way_for_longer_than_the_grace_is_not_waited_for(caches_on: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload that hangs (the database in trouble) stops being waited for once the grace has passed: the other
    threads read for themselves at once, as before."""
    import threading

    monkeypatch.setattr(tenant_cache, "STALE_GRACE_S", 0.05)
    cache: TenantCache[str] = TenantCache(f"hung-{uuid.uuid4().hex[:6]}", ttl=lambda: 0.05)
    cache.get_or_load("alpha", "k", lambda: "old")
    time.sleep(0.1)
    started, release = threading.Event(), threading.Event()

    def hung() -> str:
        started.set()
        release.wait(5)
        return "late"

    reloader = threading.Thread(target=lambda: cache.get_or_load("alpha", "k", hung))
    reloader.start()
    assert started.wait(5)
    time.sleep(0.2)  # the reload has been under way for longer than the grace
    began = time.monotonic()
    assert cache.get_or_load("alpha", "k", lambda: "own read") == "own read"
    assert time.monotonic() - began < tenant_cache.MISS_WAIT_S / 2
    release.set()
    reloader.join(5)

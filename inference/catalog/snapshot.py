"""A per-process snapshot of catalog tables, read on every model call and reloaded after ATRIUM_CATALOG_CACHE_S (or
at once after `forget`: an edit in the admin), shared by the catalog's selectors and its prices."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from config.settings_once import setting_number

T = TypeVar("T")


class CatalogSnapshot(Generic[T]):
    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None
        self._generation = 0  # bumped by `forget`: a load begun before it is not kept

    def current(self) -> T:
        """The snapshot, loaded by one thread when missing or older than ATRIUM_CATALOG_CACHE_S.

        An old snapshot keeps answering the other threads while that one reloads it (issue 18: every busy thread
        used to queue behind the reload, a spike in the c=32 tail every ATRIUM_CATALOG_CACHE_S); a forgotten one
        (an edit) is gone, so they wait for the new one."""
        ttl = setting_number("ATRIUM_CATALOG_CACHE_S", 10.0)
        value = self._value
        if value is not None and time.monotonic() - value[0] <= ttl:
            return value[1]
        if value is not None and not self._lock.acquire(blocking=False):
            return value[1]  # expired by time only, and another thread is reloading it
        if value is None:
            self._lock.acquire()
        try:
            value = self._value
            if value is None or time.monotonic() - value[0] > ttl:
                generation = self._generation
                loaded = self._load()
                value = (time.monotonic(), loaded)
                if generation == self._generation:
                    self._value = value
            return value[1]
        finally:
            self._lock.release()

    def forget(self) -> None:
        """Drop this process's snapshot; the next read loads the tables again."""
        self._generation += 1
        self._value = None

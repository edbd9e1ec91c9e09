"""A per-process snapshot of catalog tables, read on every model call and reloaded after ATRIUM_CATALOG_CACHE_S (or
at once after `forget`: an edit in the admin), shared by the catalog's selectors and its prices."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings

T = TypeVar("T")


class CatalogSnapshot(Generic[T]):
    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None

    def current(self) -> T:
        """The snapshot, loaded by one thread when missing or older than ATRIUM_CATALOG_CACHE_S."""
        ttl = float(getattr(settings, "ATRIUM_CATALOG_CACHE_S", 10.0))
        value = self._value
        if value is None or time.monotonic() - value[0] > ttl:
            with self._lock:
                value = self._value
                if value is None or time.monotonic() - value[0] > ttl:
                    value = self._value = (time.monotonic(), self._load())
        return value[1]

    def forget(self) -> None:
        """Drop this process's snapshot; the next read loads the tables again."""
        self._value = None

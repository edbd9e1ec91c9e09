"""A request thread's database connections closed when the thread ends.

granian serves requests on a pool of blocking threads and ends a thread after 30 s without work, starting new ones
at the next burst. Django keeps each thread's connections in a thread-local; when a thread ends its thread-local
values are dropped, but a DatabaseWrapper sits in reference cycles (its client, creation, features, introspection,
ops and validation objects point back to it), so it, and the open psycopg connection under it, live on until the
cyclic collector's next full collection, which on a quiet server may not come for a long time: a stand held ~30
idle PostgreSQL backends after one burst that followed a quiet spell (docs/benchmarks.md, eighth session), each
burst adding more toward PostgreSQL's max_connections.

`close_at_thread_exit()`, called by the server wrapper (config.serve) at every request, does its work at a thread's
first request only: it keeps, in a thread-local of this module, an object outside any reference cycle that holds
the thread's own storage of Django's connection handler (its alias -> wrapper dict). When the thread ends,
reference counting frees that object at once, and it closes the wrappers' database connections (the psycopg
connection itself: the wrapper belongs to the thread that is gone).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from config import thread_locals

_local = threading.local()


class _Closer:
    """Closes the database connections of its thread's wrappers when it is freed (at its thread's end)."""

    __slots__ = ("wrappers",)

    def __init__(self, wrappers: dict[str, Any]) -> None:
        self.wrappers = wrappers  # the thread's own alias -> wrapper storage: the wrappers made later are in it too

    def __del__(self) -> None:
        for wrapper in list(self.wrappers.values()):
            raw = getattr(wrapper, "connection", None)
            if raw is not None:
                # The thread is gone (or the interpreter is stopping): nobody to tell; PostgreSQL ends the backend.
                with contextlib.suppress(Exception):
                    raw.close()


def close_at_thread_exit() -> None:
    """Make sure this thread's database connections are closed when it ends (cheap after a thread's first call).
    It creates no connection and needs no database setting: it holds the thread's storage of Django's connection
    handler (config.thread_locals), whatever connections the thread opens later."""
    if "closer" in _local.__dict__:
        return
    from django.db import connections

    storage = thread_locals.values(connections._connections)  # type: ignore[attr-defined]
    if storage is None:  # asgiref's storage not readable here (config.thread_locals.FAST): left to the collector
        _local.closer = None
        return
    _local.closer = _Closer(storage)

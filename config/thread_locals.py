"""Reads of the asgiref Locals behind Django's per-thread state (the database connections, the caches, the URLconf
and script prefix of django.urls) without asgiref's attribute machinery, for the /v1 lane's per-request work.

Each read through a Local costs a Python-level __getattr__ or two (and, for Django's connections, an
asyncio.get_running_loop() that raises in every sync thread); a test for a name not set (`hasattr`, as
`connections.all(initialized_only=True)`, `caches.close_all()` and `set_urlconf(None)` do) also raises and catches
an AttributeError whose message formats the Local's repr: 1.8-2.5 us each, some 8 us of a /v1 call's end-of-request
work. These functions read the same storage the Local reads (asgiref 3.x):

- a thread-critical Local (Django's connections) in a thread without a running event loop keeps its values in a
  threading.local (`_storage`): its __dict__ is this thread's values;
- a Local (the caches, django.urls' state) keeps a copy-on-write dict in a context variable, tagged with the thread
  that set it (a dict inherited by another thread is not that thread's: empty).

Anything else (another asgiref, a running event loop, a Local a test put in place) is read through the Local
itself. `FAST` says whether this asgiref's Locals read as expected (checked once at import, on Locals of its own).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from asgiref import local as _asgiref_local

_running_loop: Callable[[], Any] = asyncio._get_running_loop
_ident = threading.get_ident
_THREAD_CRITICAL: Any = getattr(_asgiref_local, "_ThreadCriticalLocal", None)
_CONTEXT: Any = getattr(_asgiref_local, "_DefaultLocal", None)
_NONE: dict[str, Any] = {}


def values(local: Any) -> dict[str, Any] | None:
    """This thread's (and context's) values of `local`, name -> value, to read only; None when they cannot be read
    here without the Local's own machinery (the caller then uses it)."""
    kind = type(local)
    if kind is _THREAD_CRITICAL:
        if _running_loop() is not None:
            return None
        return local._storage.__dict__  # type: ignore[no-any-return]
    if kind is _CONTEXT:
        storage = local._storage._data.get(None)
        if storage is None or storage.thread_id != _ident():
            return _NONE
        return storage.data  # type: ignore[no-any-return]
    return None


def initialized(handler: Any) -> list[Any]:
    """`handler.all(initialized_only=True)` (Django's connections or caches): this thread's connections, in the order
    of the settings' aliases."""
    found = values(handler._connections) if FAST else None
    if found is None:
        return handler.all(initialized_only=True)  # type: ignore[no-any-return]
    return [found[alias] for alias in handler if alias in found]


def has(local: Any, name: str) -> bool:
    """hasattr(local, name)."""
    found = values(local) if FAST else None
    return hasattr(local, name) if found is None else name in found


def get(local: Any, name: str, default: Any = None) -> Any:
    """getattr(local, name, default)."""
    found = values(local) if FAST else None
    return getattr(local, name, default) if found is None else found.get(name, default)


def _self_test() -> bool:
    """Whether `values` reads what the Locals hold, set and unset, in this thread."""
    if _THREAD_CRITICAL is None or _CONTEXT is None:
        return False
    try:
        for local in (_asgiref_local.Local(thread_critical=True), _asgiref_local.Local()):
            if type(local) not in (_THREAD_CRITICAL, _CONTEXT) or values(local) != {}:
                return False
            local.probe = marker = object()
            seen = values(local)
            if seen is None or seen.get("probe") is not marker or getattr(local, "probe", None) is not marker:
                return False
            del local.probe
            if values(local) != {} or hasattr(local, "probe"):
                return False
    except Exception:  # another asgiref's internals: read through the Locals
        return False
    return True


FAST = _self_test()

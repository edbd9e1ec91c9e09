"""config.thread_locals reads what asgiref's Locals hold: in this thread, in another thread, under an event loop
(through the Local itself), for Django's connections, caches and URL state."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.local import Local
from asgiref.sync import async_to_sync, sync_to_async
from django.core.cache import caches
from django.db import connections
from django.urls import base as urls_base
from django.urls import get_script_prefix, set_script_prefix, set_urlconf

from config import thread_locals


def test_this_asgiref_is_read_directly() -> None:
    assert thread_locals.FAST


@pytest.mark.parametrize("critical", [True, False])
def test_values_as_the_local_reads_them(critical: bool) -> None:
    local = Local(thread_critical=critical)
    assert not thread_locals.has(local, "a") and thread_locals.get(local, "a", 7) == 7
    local.a = 1
    assert thread_locals.has(local, "a") and thread_locals.get(local, "a") == 1
    seen: list[Any] = []

    def other() -> None:  # another thread: none of this thread's values, its own once set
        seen.append((thread_locals.has(local, "a"), thread_locals.get(local, "a")))
        local.a = 2
        seen.append(thread_locals.get(local, "a"))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen == [(False, None), 2] and thread_locals.get(local, "a") == 1
    del local.a
    assert not thread_locals.has(local, "a")


@pytest.mark.parametrize("critical", [True, False])
def test_under_an_event_loop_and_across_sync_async_as_the_local_reads(critical: bool) -> None:
    local = Local(thread_critical=critical)
    local.a = 1

    def both() -> tuple[tuple[bool, Any], tuple[bool, Any]]:
        return (thread_locals.has(local, "a"), thread_locals.get(local, "a")), (hasattr(local, "a"),
                                                                                getattr(local, "a", None))

    async def in_loop() -> list[tuple[tuple[bool, Any], tuple[bool, Any]]]:
        return [both(), await sync_to_async(both)()]

    for ours, locals_own in [*asyncio.run(in_loop()), *async_to_sync(in_loop)()]:
        assert ours == locals_own


def test_djangos_connections_caches_and_url_state() -> None:
    connections.close_all()
    assert thread_locals.initialized(connections) == connections.all(initialized_only=True)
    connections["default"]
    assert thread_locals.initialized(connections) == connections.all(initialized_only=True) == [connections["default"]]
    assert thread_locals.get(connections._connections, "default") is connections["default"]
    caches["default"]
    assert thread_locals.initialized(caches) == caches.all(initialized_only=True) == [caches["default"]]
    set_urlconf("config.urls")
    assert thread_locals.has(urls_base._urlconfs, "value")
    set_urlconf(None)
    assert not thread_locals.has(urls_base._urlconfs, "value")
    set_script_prefix("/x")
    assert thread_locals.get(urls_base._prefixes, "value") == get_script_prefix() == "/x/"
    set_script_prefix("/")

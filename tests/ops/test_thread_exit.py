"""A request thread's database connections are closed when the thread ends (config.thread_exit), not left open
until the cyclic collector's next full collection: granian ends idle request threads and starts new ones at the
next burst, each with connections of its own."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from config import serve
from config.thread_exit import close_at_thread_exit
from tests.ops.test_serve import _Proto, _scope


@pytest.fixture
def no_collector(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Real connections (no test transaction), and the cyclic collector off: what is closed is closed by the
    thread's end, not by a collection meanwhile."""
    gc.collect()
    gc.disable()
    try:
        with django_db_blocker.unblock():
            yield
    finally:
        gc.enable()


def _in_a_thread(work: Callable[[], None]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    test_database = dict(connection.settings_dict)  # a new thread's wrapper starts from the settings' database

    def run() -> None:
        connection.settings_dict.update(test_database)
        work()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            seen["pid"] = cursor.fetchone()[0]
        seen["raw"] = connection.connection

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen


def _backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


def test_a_threads_connection_is_closed_when_the_thread_ends(no_collector: None) -> None:
    kept = _in_a_thread(lambda: None)  # without it: open until a full collection
    ended = _in_a_thread(close_at_thread_exit)
    try:
        assert not kept["raw"].closed, "the cycle keeps an unarmed thread's connection open (the case fixed here)"
        assert ended["raw"].closed
        for _ in range(200):  # the backend ends once it reads the connection's Terminate message
            if not _backend_alive(ended["pid"]):
                break
            threading.Event().wait(0.05)
        assert not _backend_alive(ended["pid"])
    finally:
        kept["raw"].close()


def test_the_server_wrapper_arms_it_at_a_threads_requests(no_collector: None) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    runner = serve.wsgi_callback_wrapper(app, {}, None)
    seen = _in_a_thread(lambda: runner(_Proto(), _scope()))
    assert seen["raw"].closed


def test_arming_twice_in_a_thread_keeps_one_closer() -> None:
    from config import thread_exit

    close_at_thread_exit()
    first = thread_exit._local.closer
    close_at_thread_exit()
    assert thread_exit._local.closer is first
    from django.db import connections

    wrapper = connections["default"]  # made after arming (no connection opened): in the storage the closer holds
    assert any(wrapper is each for each in first.wrappers.values())


def test_arming_needs_no_database_setting_and_opens_nothing() -> None:
    """The server wrapper arms it at every thread's first request, whatever the application: it makes no
    connection (the access-log tests run the wrapper in processes without Django set up)."""
    import subprocess
    import sys

    from tests.ops.test_serve import ROOT

    code = ("import threading\n"
            "from config.thread_exit import close_at_thread_exit, _local\n"
            "def run():\n"
            "    close_at_thread_exit()\n"
            "    assert _local.closer is not None and dict(_local.closer.wrappers) == {}\n"
            "t = threading.Thread(target=run); t.start(); t.join()\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr

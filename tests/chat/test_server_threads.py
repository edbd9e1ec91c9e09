"""Against a real web server (config.serve: granian, one worker of 8 request threads, the production settings, real
PostgreSQL and Redis):
bursts of concurrent /v1 calls separated by quiet spells long enough for granian to end its idle request threads
(ATRIUM_WEB_THREADS_IDLE_TIMEOUT_S). Each burst runs on new threads; what a thread held of its own (its database
connections, config.thread_exit) must go with it, and what the process shares (its Redis client's pool and
config.redis's lanes, the provider clients) must be reused, not grow with every generation of threads."""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from inference.simulator import Simulator
from tests.chat.conftest import web_env
from tests.conftest import WebServer

pytestmark = pytest.mark.slow
THREADS = 8  # WebServer's --threads
BURSTS = 4
CLIENTS = 2 * THREADS  # more clients than threads: every thread of the pool serves
CALLS = 6  # per client and burst


def _processes(server: WebServer) -> list[psutil.Process]:
    assert server.proc is not None
    main = psutil.Process(server.proc.pid)
    return [main, *main.children(recursive=True)]


def _connections(server: WebServer, port: int) -> int:
    """The server's processes' established TCP connections to `port` on loopback (PostgreSQL, Redis)."""
    count = 0
    for process in _processes(server):
        for conn in process.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_ESTABLISHED and conn.raddr and conn.raddr.port == port:
                count += 1
    return count


def _held(server: WebServer, port: int) -> int:
    """The connections to `port` the server holds on to: the fewest of a few looks 0.5 s apart (a background
    pass of the server's own, such as the settlement recovery 30 s after its start, opens and closes one)."""
    counts = []
    for _ in range(4):
        counts.append(_connections(server, port))
        time.sleep(0.5)
    return min(counts)


def _threads(server: WebServer) -> int:
    return sum(process.num_threads() for process in _processes(server))


def _burst(server: WebServer, key: str) -> None:
    body = {"model": "claude-haiku-5-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Host": "alpha.localhost", "X-Forwarded-Proto": "https", "x-api-key": key,
               "anthropic-version": "2023-06-01"}

    def client(_n: int) -> list[int]:
        with httpx.Client(base_url=server.url("127.0.0.1"), timeout=60) as http:
            return [http.post("/v1/messages", json=body, headers=headers).status_code for _ in range(CALLS)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [status for each in pool.map(client, range(CLIENTS)) for status in each]
    assert statuses == [200] * (CLIENTS * CALLS)


def _settled(server: WebServer) -> int:
    """Wait until granian has ended the burst's request threads (5 s after their last request): the server's
    thread count unchanged for longer than that. Returns it."""
    last, since = _threads(server), time.monotonic()
    while time.monotonic() - since < 8:
        time.sleep(0.5)
        now = _threads(server)
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_request_threads_ended_between_bursts_leave_no_clients_behind(simulator: Simulator, clean: None,
                                                                      committed_user: Any, settings: Any) -> None:
    from django.db import connection

    pg_port = int(connection.settings_dict.get("PORT") or 5432)
    redis_port = urlsplit(settings.REDIS_URL).port or 6379
    # The production settings: each thread keeps its database connection between requests (CONN_MAX_AGE; the test
    # settings close it after each request).
    # The keys are the test session's: the server reads the API key this process stored.
    env = web_env(simulator, DJANGO_SETTINGS_MODULE="config.settings.production", DJANGO_SECRET_KEY=settings.SECRET_KEY,
                  ATRIUM_ENCRYPTION_KEYS=",".join(settings.ATRIUM_ENCRYPTION_KEYS),
                  ATRIUM_PLATFORM_AUDIT_KEY=settings.ATRIUM_PLATFORM_AUDIT_KEY,
                  ATRIUM_AUDIT_CHECKPOINT_KEY=settings.ATRIUM_AUDIT_CHECKPOINT_KEY,
                  ATRIUM_STATIC_ROOT=tempfile.mkdtemp(prefix="atrium-static-"), ATRIUM_LOG_LEVEL="WARNING",
                  ATRIUM_WEB_THREADS_IDLE_TIMEOUT_S="5")
    server = WebServer(env, workers=1).start()
    try:
        _user, key = committed_user("alpha")
        # A first burst starts what the process starts once (the cache listener, the record writer's threads...).
        _burst(server, key)
        threads = _settled(server)
        seen: list[dict[str, int]] = []
        for _ in range(BURSTS):
            _burst(server, key)
            busy = {"busy_threads": _threads(server), "busy_pg": _connections(server, pg_port),
                    "busy_redis": _connections(server, redis_port)}
            seen.append({**busy, "threads": _settled(server), "pg": _held(server, pg_port),
                         "redis": _held(server, redis_port)})
        assert all(each["threads"] <= threads for each in seen), (threads, seen)  # each burst's threads ended
        first = seen[0]
        # The burst's threads opened connections of their own, and closed them as they ended...
        assert first["pg"] < first["busy_pg"], seen
        # ...every time: an ended thread's connections do not pile up toward max_connections.
        assert all(each["pg"] <= first["pg"] for each in seen), seen
        # Redis: the process's shared connections, at most one per thread in use at once for the lanes and as
        # many for the client's pool, reused by every generation of threads (per-thread clients would add
        # THREADS more at each burst).
        assert all(each["redis"] <= 2 * THREADS + 2 for each in seen), seen
    finally:
        server.stop()

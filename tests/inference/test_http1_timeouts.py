"""The direct exchange's timeouts (inference/providers/http1.py over config.wire: blocking plain-TCP sockets whose
reads the kernel bounds with SO_RCVTIMEO, sends tried at once) against a real server that never answers. Compared
as ratios, never against a wall-clock limit: the timeout raised no earlier than its bound, and far sooner than a
longer bound that must not apply; every call runs in a thread joined with a generous guard, so a hang fails."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from inference.providers.anthropic_api import AnthropicClient
from tests.timed import timed

PARAMS = {"model": "claude-sonnet-5-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
BODY = b'{"type":"x","a":1}'
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)


class Server:
    """Answers the first `answered` requests of each connection (keep-alive), then reads and never answers."""

    def __init__(self, answered: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.answered = answered
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        pending, served = b"", 0
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            pending += data
            while b"\r\n\r\n" in pending:
                head, _, rest = pending.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if len(rest) < length:
                    break
                pending = rest[length:]
                if served < self.answered:
                    conn.sendall(ANSWER)
                served += 1

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def server_factory() -> Iterator[Callable[[int], Server]]:
    made: list[Server] = []

    def make(answered: int) -> Server:
        made.append(Server(answered))
        return made[-1]

    yield make
    for server in made:
        server.close()


def stream_first(client: AnthropicClient, timeout: float, budget: float) -> Any:
    return next(iter(client.messages_stream_raw({**PARAMS, "stream": True}, timeout,
                                                first_event_by=time.monotonic() + budget)))


def test_a_provider_that_never_answers_times_out_on_the_first_byte_budget(server_factory: Any) -> None:
    """The read timeout is 30 s, the first-byte budget 0.3 s: APITimeoutError after the budget, not the timeout."""
    server = server_factory(0)
    client = AnthropicClient(api_key="sk-ant-x", base_url=server.url, timeout=30)
    assert client._direct is not None
    result, took = timed(lambda: stream_first(client, 30, 0.3))
    assert isinstance(result, anthropic.APITimeoutError)
    assert 0.3 <= took < 30 / 4


def test_a_provider_that_never_answers_times_out_on_the_read_timeout(server_factory: Any) -> None:
    server = server_factory(0)
    client = AnthropicClient(api_key="sk-ant-x", base_url=server.url, timeout=0.3)
    result, took = timed(lambda: client.messages_create_raw(dict(PARAMS), 0.3))
    assert isinstance(result, anthropic.APITimeoutError)
    assert took >= 0.3


def test_a_kept_connection_with_a_longer_bound_still_times_out_on_the_shorter_one(server_factory: Any) -> None:
    """The first call (30 s timeout) is answered on a connection kept for the next, whose socket is blocking and
    keeps the 30 s bound; the second call (0.3 s) is never answered: APITimeoutError after 0.3 s, not 30."""
    server = server_factory(1)
    client = AnthropicClient(api_key="sk-ant-x", base_url=server.url, timeout=30)
    assert client.messages_create_raw(dict(PARAMS), 30) == {"type": "x", "a": 1}
    assert client._pool.num_connections == 1
    conn = client._pool.pool.queue[-1]
    assert conn.sock is not None
    assert conn.sock.gettimeout() is None, "the connection's socket is blocking (config.wire)"
    result, took = timed(lambda: client.messages_create_raw(dict(PARAMS), 0.3))
    assert isinstance(result, anthropic.APITimeoutError)
    assert 0.3 <= took < 30 / 4
    assert client._pool.num_connections == 1, "the same connection was used"

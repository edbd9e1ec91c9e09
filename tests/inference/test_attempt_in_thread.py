"""Without hedging, an attempt on the Anthropic API's direct transport runs in the request's own thread
(inference.attempts): no hand-off to the attempt pool. Its first-byte budget, failover and breaker accounting are
the pool's: here against a provider that answers its headers at once, then pings every 0.2 s and sends its first
event late (a plain read timeout would let that through: no read in it waits long), and one whose events after the
first come slower than the budget (which bounds the first event only)."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from inference import attempts, breaker
from inference.errors import ProviderUnavailable
from inference.providers.base import provider_client
from inference.router import route, route_stream
from inference.simulator import Simulator
from tests.inference.routing import ask, bname, target

LATE_S = 3.0  # the slow provider's first event comes this long after its headers
# The budget in the slow cases: two thirds of LATE_S, so an attempt held for twice its budget (a wait counted from
# before the attempt ran, as an early version did) would outlast the provider and be caught.
BUDGET_S = 2.0

EVENTS = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_late","type":"message","role":'
    b'"assistant","model":"claude-sonnet-5-5","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text",'
    b'"text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"late"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":1}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


class LateFirstEvent:
    """A provider that sends its status line and headers at once, then pings every 0.2 s and its events after
    `LATE_S`; it notes whether the client was still there to receive them. `first_at_once`: the first event comes
    with the headers, the others after `LATE_S` of silence."""

    def __init__(self, first_at_once: bool = False) -> None:
        self.first_at_once = first_at_once
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.delivered: list[bool] = []
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:  # all of it: closing on unread bytes would reset the connection
                data = conn.recv(65536)
                if not data:
                    return
                body += data
            first, rest = EVENTS.split(b"\n\n", 1)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
                             + (first + b"\n\n" if self.first_at_once else b""))
                late = time.monotonic() + LATE_S
                while time.monotonic() < late:  # after a first event: silence, longer than the budget
                    if not self.first_at_once:
                        conn.sendall(b'event: ping\ndata: {"type":"ping"}\n\n')
                    time.sleep(0.2)
                conn.sendall(rest if self.first_at_once else EVENTS)
                time.sleep(0.2)
                conn.sendall(b'event: ping\ndata: {"type":"ping"}\n\n')  # fails once the peer has closed
                self.delivered.append(True)
            except OSError:
                self.delivered.append(False)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def late(sim: Simulator, settings: Any) -> Iterator[LateFirstEvent]:
    server = LateFirstEvent()
    settings.ATRIUM_ANTHROPIC_BASE_URL = server.url  # the clients' cache is keyed by base URL: a new client,
    provider_client(target("anthropic"))  # built now, as inference.warm does at a process's start
    yield server
    server.close()


@pytest.fixture
def threads_used(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(provider, name of the thread that opened its stream), in order: a spy on the real call."""
    seen: list[tuple[str, str]] = []
    real = attempts.provider_stream

    def spy(client: Any, **kwargs: Any) -> Any:
        seen.append((type(client).__name__, threading.current_thread().name))
        return real(client, **kwargs)

    monkeypatch.setattr(attempts, "provider_stream", spy)
    return seen


def test_an_anthropic_attempt_runs_in_the_request_thread_and_others_in_the_pool(sim: Simulator,
                                                                                threads_used: list[Any]) -> None:
    here = threading.current_thread().name
    assert route(ask(), [target("anthropic")]).provider == "anthropic"  # its client is built: in the pool
    assert route(ask(), [target("anthropic")]).provider == "anthropic"
    sim.faults.set("anthropic", "", status=529, count=1)
    assert route(ask(), [target("anthropic"), target("vertex:us-east5")]).provider == "vertex"
    assert route(ask(), [target("bedrock:us-east-1"), target("anthropic")], hedge_delay_s=5.0).provider == "bedrock"
    names = [name for _client, name in threads_used]
    # A client not built yet (or due for new credentials) is built in the pool, never in the request's thread.
    assert names[0] != here and names[0].startswith("attempt")
    assert names[1:3] == [here, here]  # Anthropic, then Anthropic again (529) in this thread
    assert names[3] != here and names[3].startswith("attempt")  # Vertex's SDK stream: in the pool
    assert names[4] != here and names[4].startswith("attempt")  # hedging: always in the pool


def test_a_first_event_later_than_the_budget_fails_over_though_headers_came_at_once(late: LateFirstEvent,
                                                                                    threads_used: list[Any]) -> None:
    slow = dataclasses.replace(target("anthropic"), first_byte_timeout_s=BUDGET_S)
    result = route(ask(), [slow, target("bedrock:us-east-1")])
    assert (result.provider, result.region) == ("bedrock", "us-east-1")
    first, second = result.attempts
    assert (first.target, first.outcome, first.reason) == ("anthropic", "failover", "no first byte within 2 s")
    assert second.outcome == "ok"
    assert first.latency_ms < LATE_S * 1000  # abandoned at its budget, before the provider's first event
    assert breaker.breaker_state(bname("anthropic")).failures == 1  # slow is a failure of the provider
    assert threads_used[0][1] == threading.current_thread().name
    deadline = time.monotonic() + 2 * LATE_S + 5
    while not late.delivered and time.monotonic() < deadline:
        time.sleep(0.05)
    assert late.delivered == [False]  # its connection was closed: the late answer was never read


def test_a_lone_slow_target_ends_in_a_529_at_its_budget_and_a_stream_too(late: LateFirstEvent) -> None:
    slow = dataclasses.replace(target("anthropic"), first_byte_timeout_s=BUDGET_S)
    with pytest.raises(ProviderUnavailable) as info:
        route(ask(), [slow])
    [attempt] = info.value.attempts
    assert (attempt.outcome, attempt.reason) == ("failover", "no first byte within 2 s")
    assert attempt.latency_ms < LATE_S * 1000 and not info.value.deadline_exceeded
    with pytest.raises(ProviderUnavailable) as streamed:
        route_stream(ask(), [slow])
    [attempt] = streamed.value.attempts
    assert attempt.reason == "no first byte within 2 s" and attempt.latency_ms < LATE_S * 1000
    assert breaker.breaker_state(bname("anthropic")).failures == 2


def test_after_the_first_event_a_slower_stream_is_not_cut_by_the_budget(sim: Simulator, settings: Any) -> None:
    """The budget bounds the first event only: the rest of the answer is read under the request's deadline."""
    server = LateFirstEvent(first_at_once=True)
    settings.ATRIUM_ANTHROPIC_BASE_URL = server.url
    try:
        quick = dataclasses.replace(target("anthropic"), first_byte_timeout_s=0.5)
        stream = route_stream(ask(), [quick])
        events = list(stream)
        assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
        assert stream.attempts[0].outcome == "ok"
        result = route(ask(), [quick])
        assert result.message["content"] == [{"type": "text", "text": "late"}]
    finally:
        server.close()

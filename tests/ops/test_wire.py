"""config.wire: a blocking socket's sends and receives bounded by the timeouts a socket with a timeout would have,
against real sockets (a peer that never answers, one that never reads). No wall-clock limits: a timeout is
compared with the wait it bounds (never earlier than it; and, for a bound that must not be a stale longer one, a
small fraction of that longer one), and every wait runs in a thread joined with a generous guard so a hang fails."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from config.wire import Wire
from tests.timed import timed


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A TCP connection over loopback: (ours, the peer's)."""
    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(listener.getsockname(), timeout=5)
    peer, _ = listener.accept()
    listener.close()
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


def test_a_receive_returns_what_has_arrived_and_the_socket_stays_blocking(pair: Any) -> None:
    ours, peer = pair
    wire = Wire(ours)
    assert ours.gettimeout() is None
    peer.sendall(b"hello")
    assert wire.recv(65536, 5) == b"hello"
    wire.send_all(b"x" * 100_000, 5)
    got = b""
    while len(got) < 100_000:
        got += peer.recv(65536)
    assert got == b"x" * 100_000
    peer.close()
    assert wire.recv(65536, 5) == b""  # the end of the stream
    assert ours.gettimeout() is None


def test_a_peer_that_never_answers_times_out_never_earlier_than_the_timeout(pair: Any) -> None:
    wire = Wire(pair[0])
    result, took = timed(lambda: wire.recv(65536, 0.2))
    assert isinstance(result, TimeoutError)
    assert took >= 0.2
    result, took = timed(lambda: wire.recv(65536, 0.05))
    assert isinstance(result, TimeoutError)
    assert took >= 0.05


def test_a_bound_of_a_second_or_more_is_kept_for_a_longer_wait_which_still_gets_its_data(pair: Any) -> None:
    """A 5 s timeout leaves a bound under 5 s; a 120 s read then keeps it (no setsockopt) and wakes early only to
    wait again: data that comes after the bound ran out once is still received, not a timeout."""
    ours, peer = pair
    wire = Wire(ours)
    peer.sendall(b"a")
    assert wire.recv(1, 5) == b"a"
    bound = wire.rcvtimeo
    peer.sendall(b"b")
    assert wire.recv(1, 120) == b"b"
    assert wire.rcvtimeo == bound
    wire._rcvtimeo(1.0)  # a second: kept for a 3 s wait, whose data comes after the bound ran out once
    threading.Timer(1.3, peer.sendall, args=(b"c",)).start()
    result, took = timed(lambda: wire.recv(1, 3.0))
    assert result == b"c"
    assert took > 1.0
    assert wire.rcvtimeo == 1.0


def test_a_longer_bound_set_before_does_not_stretch_a_shorter_timeout(pair: Any) -> None:
    """SO_RCVTIMEO kept from a 30 s timeout must not bound a later 0.2 s one."""
    ours, peer = pair
    wire = Wire(ours)
    peer.sendall(b"a")
    assert wire.recv(1, 30) == b"a"
    assert wire.rcvtimeo > 0.2
    result, took = timed(lambda: wire.recv(65536, 0.2))
    assert isinstance(result, TimeoutError)
    assert 0.2 <= took < 30 / 4


def test_a_short_bound_set_before_does_not_cut_a_longer_timeout(pair: Any) -> None:
    """After a 0.05 s timeout, a 1 s one waits for data that comes after 0.3 s (well past the old bound)."""
    ours, peer = pair
    wire = Wire(ours)
    assert isinstance(timed(lambda: wire.recv(1, 0.05))[0], TimeoutError)
    threading.Timer(0.3, peer.sendall, args=(b"late",)).start()
    result, took = timed(lambda: wire.recv(65536, 1.0))
    assert result == b"late"
    assert took > 0.05 * 2  # waited well past the old bound (the timer started a moment before the wait)


def test_the_same_timeout_again_sets_no_new_bound(pair: Any) -> None:
    """The kernel's bound is set once for a timeout used call after call (and one shrinking by microseconds)."""
    ours, peer = pair
    wire = Wire(ours)
    peer.sendall(b"ab")
    assert wire.recv(1, 5) == b"a"
    bound = wire.rcvtimeo
    assert 0 < bound <= 5
    raw = ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    kernel = int.from_bytes(raw[:8], "little") + int.from_bytes(raw[8:16], "little") / 1_000_000
    assert bound <= kernel <= bound + 0.02  # what was set, rounded up to the kernel's tick
    assert wire.recv(1, 4.999) == b"b"
    assert wire.rcvtimeo == bound


def test_a_send_to_a_peer_that_never_reads_times_out(pair: Any) -> None:
    """The whole send is bounded by the timeout, as sendall on a socket with a timeout: the buffers fill up."""
    wire = Wire(pair[0])
    result, took = timed(lambda: wire.send_all(b"x" * (64 * 1024 * 1024), 0.3))
    assert isinstance(result, TimeoutError)
    assert took >= 0.3


def test_a_timeout_someone_else_set_is_undone_before_a_call(pair: Any) -> None:
    ours, peer = pair
    wire = Wire(ours)
    ours.settimeout(3)  # urllib3 reusing the connection on its own path
    peer.sendall(b"z")
    assert wire.recv(1, 5) == b"z"
    assert ours.gettimeout() is None

"""Socket sends and receives with a timeout, without the poll() a Python socket with a timeout makes before each of
them (config.redis's lanes, inference.providers.http1's exchange).

A socket with a timeout (`settimeout(t)`) is non-blocking underneath: every recv and send first polls the socket for
up to `t`, then makes the call, and every `settimeout` switches O_NONBLOCK with an ioctl. On a machine where each
syscall is expensive (gVisor) that was a third of the syscalls of a gateway call (strace -c, issue 18). A `Wire`
keeps the socket blocking (`settimeout(None)`, once per connection) and bounds each call itself:

- `send_all(data, timeout)`: each send is tried at once (MSG_DONTWAIT); only when the kernel's buffer is full does
  it poll for room. As `sendall` on a socket with a timeout: the whole send must end within `timeout`.
- `recv(size, timeout)`: a blocking recv whose wait the kernel bounds (SO_RCVTIMEO): one syscall. As `recv` on a
  socket with a timeout: the data that has arrived (at least a byte, or b"" at the end of the stream), waiting at
  most `timeout` for it, else TimeoutError. SO_RCVTIMEO is set only when the bound must change: a value already set
  is kept while it is no longer than the wait allowed and either at least half of it or at least a second (a recv
  that times out early is retried for the rest, to the microsecond: an idle wait wakes at most once a second), and
  a wait of 0.1 s or more sets it to 95% of the wait; so a timeout that is the same, or shrinks by microseconds,
  from one call to the next (a deadline's remainder), or a first-byte budget followed by a longer read timeout on
  the same connection, costs no setsockopt.

Timeouts keep their meaning: a peer that never answers raises TimeoutError once `timeout` has passed (the kernel's
clock, rounded up to its tick), never earlier. One difference, in a rare case: a signal delivered to the waiting
thread interrupts the recv and Python retries it (PEP 475) with the whole SO_RCVTIMEO again, so that wait can last
up to twice its bound. Plain TCP sockets only: TLS sockets (whose SSL_read would report the kernel's timeout as
"want read") keep Python's own timeouts.
"""

from __future__ import annotations

import select
import socket
import struct
import time

_TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds
_MAX_TIMEOUT = 10_000_000.0  # SO_RCVTIMEO's ceiling here (some 115 days): a timeval a kernel surely takes
_EXACT = 0.1  # a wait shorter than this gets SO_RCVTIMEO to the microsecond; a longer one 95% of it (see `recv`)
_REUSE = 1.0  # a bound of at least this is kept for any longer wait (a recv then wakes at most once a second)


class Wire:
    """One blocking socket and the receive timeout (SO_RCVTIMEO) it has: 0.0 for none (the kernel's meaning)."""

    __slots__ = ("_poller", "rcvtimeo", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rcvtimeo = -1.0  # unknown until set: the first bounded (or unbounded) recv sets it
        self._poller: select.poll | None = None
        if sock.gettimeout() is not None:
            sock.settimeout(None)

    def send_all(self, data: bytes, timeout: float | None) -> None:
        """`sock.sendall(data)` as on a socket whose timeout is `timeout` (None: none)."""
        sock = self.sock
        if sock.gettimeout() is not None:  # someone else set a timeout on it since
            sock.settimeout(None)
        view = memoryview(data)
        until = None if timeout is None else time.monotonic() + timeout
        while view:
            try:
                sent = sock.send(view, socket.MSG_DONTWAIT)
            except BlockingIOError:
                _wait_writable(sock, until)
                continue
            view = view[sent:]

    def recv(self, size: int, timeout: float | None) -> bytes:
        """`sock.recv(size)` as on a socket whose timeout is `timeout` (> 0; None: none)."""
        sock = self.sock
        if sock.gettimeout() is not None:
            sock.settimeout(None)
        if timeout is None:
            if self.rcvtimeo != 0.0:
                self._rcvtimeo(0.0)
            return sock.recv(size)
        until = time.monotonic() + timeout
        left = timeout
        while True:
            if left <= 0:  # as a socket with a timeout after its last poll: what has arrived, else the timeout
                try:
                    return sock.recv(size, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    raise TimeoutError("timed out") from None
            current = self.rcvtimeo
            if not 0.0 < current <= left or (current < left / 2 and current < _REUSE):
                self._rcvtimeo(left if left < _EXACT else left * 0.95)
            try:
                return sock.recv(size)
            except BlockingIOError:  # SO_RCVTIMEO ran out (EAGAIN): the whole wait, or a first part of it
                left = until - time.monotonic()

    def readable(self) -> bool:
        """Whether the socket has something to read (or has ended, or failed) now, without waiting: urllib3's
        `wait_for_read(sock, timeout=0.0)` (a poll for POLLIN), with a poll object made once for the socket."""
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def _rcvtimeo(self, seconds: float) -> None:
        seconds = min(seconds, _MAX_TIMEOUT)
        whole = int(seconds)
        micro = int((seconds - whole) * 1_000_000)
        if whole == 0 and micro == 0 and seconds > 0:
            micro = 1  # a zero timeval would mean "no timeout"
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(whole, micro))
        self.rcvtimeo = seconds


def _wait_writable(sock: socket.socket, until: float | None) -> None:
    """Wait for room to send (a full send buffer), until `until`; TimeoutError when it has passed."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    if until is None:
        poller.poll()
        return
    left = until - time.monotonic()
    if left <= 0 or not poller.poll(max(int(left * 1000) + 1, 1)):
        raise TimeoutError("timed out")

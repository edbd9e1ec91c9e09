"""One HTTP/1.1 exchange over a pooled urllib3 connection's socket: the request in one write, the answer read in
large reads and framed here (status line, headers, chunked / Content-Length / until-close bodies).

urllib3 still makes and keeps the connections (DNS, TLS with its certificate checks, the pool); what it no longer
does on this path is the per-answer work of http.client underneath it (a status line and headers parsed through
email.parser, one read per chunk of the body, several layers per read), which cost the Anthropic API's direct
transport more than the loopback round trip (docs/benchmarks.md). Everything an answer can do wrong is judged
as http.client judges it (the same leniency: bare LF line ends, chunk extensions, a trailer) and fails with the
exception urllib3 raises for it today (ProtocolError around http.client's IncompleteRead, BadStatusLine,
LineTooLong..., ReadTimeoutError, SSLError), so callers map failures exactly as before.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import time
from typing import Any

import urllib3
from urllib3.exceptions import IncompleteRead, InvalidHeader, ProtocolError, ReadTimeoutError, SSLError

from config.wire import Wire
from inference.providers.http1_head import framing_headers, header_line, merged, status_line
from inference.providers.http1_pool import conn_give, conn_take, conn_wire

_MAXLINE = 65536  # http.client's bound on one line of a status, header, chunk size or trailer
_MAXHEADERS = 100
_READ = 65536
_EMPTY_LINES = (b"\r\n", b"\n", b"")
# Body framing
_CHUNKED, _LENGTH, _UNTIL_CLOSE = 0, 1, 2
# Chunked decoding state (`_left` when not a count of data bytes still to come)
_SIZE_LINE, _DATA_END, _TRAILER = -1, -2, -3


def exchange(pool: urllib3.HTTPConnectionPool, url: str, request: bytes, *, connect_timeout: float,
             read_timeout: float, read_by: float | None = None) -> Answer:
    """Send `request` (request line, headers and body, complete) on a connection of `pool` and read the answer's
    head. `read_by` (time.monotonic()): connecting, sending and reading the head all end by then. Raises what
    urllib3's `urlopen(retries=False)` raises for the same failure; the connection is then discarded."""
    if read_by is not None:
        connect_timeout = min(connect_timeout, max(read_by - time.monotonic(), 0.001))
    conn = conn_take(pool)
    try:
        if conn.is_closed:
            conn.timeout = connect_timeout
            try:
                conn.connect()
            except TimeoutError as exc:  # a TLS handshake that took too long (a TCP connect: urllib3's own error)
                raise ReadTimeoutError(pool, url, f"Read timed out. (read timeout={connect_timeout})") from exc
            except (ssl.SSLError, ssl.CertificateError) as exc:
                raise SSLError(exc) from None
            except OSError as exc:
                raise ProtocolError("Connection aborted.", exc) from None
        sock: socket.socket = conn.sock
        wire = conn_wire(conn, sock)
        try:
            if wire is not None:  # urllib3 sends under the connect timeout too
                wire.send_all(request, connect_timeout)
            else:
                sock.settimeout(connect_timeout)
                sock.sendall(request)
        except ssl.SSLError as exc:
            raise SSLError(exc) from None
        except OSError as exc:
            # As urllib3: a peer that closed (or reset) while we sent may still have answered; read that.
            if not isinstance(exc, BrokenPipeError) and exc.errno not in (errno.ECONNRESET, errno.EPROTOTYPE):
                raise ProtocolError("Connection aborted.", exc) from None
        answer = Answer(pool, conn, sock, wire)
        if read_by is not None:  # urllib3's `total`: what is left of it once the request is sent
            read_timeout = min(read_timeout, max(read_by - time.monotonic(), 0.001))
        try:
            answer.settimeout(read_timeout)
            answer._read_head()
        except TimeoutError as exc:
            raise ReadTimeoutError(pool, url, f"Read timed out. (read timeout={read_timeout})") from exc
        except ssl.SSLError as exc:
            raise SSLError(exc) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ProtocolError("Connection aborted.", exc) from None
        return answer
    except BaseException:
        conn.close()
        conn_give(pool, None)
        raise


class Answer:
    """An answer's status, headers and body, read off the connection's socket. `release_conn()` gives the
    connection back to its pool once, reusable only if the body was read to its end, nothing follows it and
    neither side said it would close; otherwise it is closed first."""

    __slots__ = ("_buf", "_conn", "_framing", "_head", "_headers", "_left", "_pool", "_received", "_sock", "_timeout",
                 "_will_close", "_wire", "connection", "done", "status")

    def __init__(self, pool: urllib3.HTTPConnectionPool, conn: Any, sock: socket.socket,
                 wire: Wire | None = None) -> None:
        self._pool = pool
        self._conn = conn
        self.connection = conn  # as urllib3's response names it (tests look at its socket)
        self._sock = sock
        self._wire = wire  # a plain TCP socket's reads (config.wire); None: the socket's own timeout
        self._timeout: float | None = None  # each read's timeout, over the wire
        self._buf = b""
        self.status = 0
        self._headers: dict[str, str] | None = {}  # None: still to be made of `_head` (see `headers`)
        self._head = b""  # the header lines, with their CRLFs (a head read at once, `_head_at_once`)
        self._framing = _UNTIL_CLOSE
        self._left = 0
        self._received = 0  # body bytes taken so far (Content-Length framing), for IncompleteRead's message
        self._will_close = True
        self.done = False  # the body was read to its end

    # -- the head ------------------------------------------------------------------------------------------------

    def _line(self, start: int, what: str) -> int:
        """The end (exclusive, past its LF) of the line starting at `start`, reading more as needed; at the end of
        the stream, the end of what there is."""
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                if end + 1 - start > _MAXLINE:
                    raise http.client.LineTooLong(what)
                return end + 1
            if len(self._buf) - start > _MAXLINE:
                raise http.client.LineTooLong(what)
            data = self._recv()
            if not data:
                return len(self._buf)
            self._buf += data

    def _read_head(self) -> None:
        if not self._buf:
            self._buf = self._recv()
            if not self._buf:
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
        if self._head_at_once():
            return
        pos = 0
        while True:  # 100 Continue answers are skipped, as http.client does
            end = self._line(pos, "status line")
            line = self._buf[pos:end]
            pos = end
            if not line:
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            version, status = status_line(line)
            names: list[tuple[str, str]] = []
            while True:
                end = self._line(pos, "header line")
                line = self._buf[pos:end]
                pos = end
                if line in _EMPTY_LINES:
                    break
                if len(names) >= _MAXHEADERS:
                    raise http.client.HTTPException(f"got more than {_MAXHEADERS} headers")
                header_line(names, line)
            if status != 100:
                break
        self._buf = self._buf[pos:]
        self._set_head(version, status, names)

    def _head_at_once(self) -> bool:
        """The head read in one step if all of it has arrived and reading it line by line could only give the same:
        every LF ends a CRLF, no line too long, not too many headers, no 100 Continue. False (nothing consumed) else.

        The headers are made into `headers` only when asked for (an error's answer, tests) when `framing_headers` can
        read the few that frame the body on their own: an answer's headers cost more to read than the rest of its
        head, and nothing reads a 200's."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if not 0 < end <= _MAXLINE - 4:
            return False
        first = buf.find(b"\r\n", 0, end)
        if first == 0:
            return False
        lines = buf.count(b"\n", 0, end) + 1
        if lines > _MAXHEADERS + 1 or buf.count(b"\r\n", 0, end) != lines - 1:
            return False
        version, status = status_line(buf[:first + 2] if first > 0 else buf[:end] + b"\r\n")  # with its line end
        if status == 100:
            return False
        head = buf[first + 2:end + 2] if first > 0 else b""  # the header lines, each with its CRLF
        self._buf = buf[end + 4:]
        framing = framing_headers(head)
        if framing is not None:
            self.status = status
            self._head, self._headers = head, None
            self._frame(version, framing)
            return True
        names: list[tuple[str, str]] = []
        for line in head.split(b"\r\n")[:-1]:
            header_line(names, line)
        self._set_head(version, status, names)
        return True

    @property
    def headers(self) -> dict[str, str]:
        """The answer's headers, by name as first sent (the values of a name sent again joined with ", ")."""
        headers = self._headers
        if headers is None:
            names: list[tuple[str, str]] = []
            for line in self._head.split(b"\r\n")[:-1]:
                header_line(names, line)
            headers = self._headers = merged(names)[0]
        return headers

    def _set_head(self, version: int, status: int, names: list[tuple[str, str]]) -> None:
        self.status = status
        headers, lower = merged(names)
        self._headers = headers
        self._frame(version, {key: headers[name] for key, name in lower.items()})

    def _frame(self, version: int, headers: dict[str, str]) -> None:
        """How the body ends, and whether the connection may serve another request (http.client's rules)."""
        connection = headers.get("connection", "").lower()
        if version == 11:
            self._will_close = "close" in connection
        else:
            self._will_close = not ("keep-alive" in connection or "keep-alive" in headers)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self._framing, self._left = _CHUNKED, _SIZE_LINE
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self._framing, self._left = _LENGTH, 0
        elif "content-length" in headers:
            try:
                lengths = {int(value) for value in headers["content-length"].split(",")}
            except ValueError:
                lengths = set()
            if len(lengths) > 1:
                raise InvalidHeader("Content-Length contained multiple unmatching values")
            length = lengths.pop() if lengths else -1
            if length >= 0:
                self._framing, self._left = _LENGTH, length
        if self._framing == _UNTIL_CLOSE:
            self._will_close = True
        elif self._framing == _LENGTH and self._left == 0:
            self.done = True

    # -- the body ------------------------------------------------------------------------------------------------

    def read1(self, amt: int = -1) -> bytes:
        """The body bytes that have arrived (at least one, reading once more if none is buffered); b"" at its end.
        Raises ProtocolError (a broken connection, a malformed chunk, an early end), ReadTimeoutError, SSLError."""
        try:
            while not self.done:
                data = self._take()
                if data:
                    return data
                if self.done:
                    break
                self._fill()
            return b""
        except TimeoutError as exc:
            raise ReadTimeoutError(self._pool, None, "Read timed out.") from exc
        except ssl.SSLError as exc:
            raise SSLError(exc) from exc
        except http.client.IncompleteRead as exc:
            raise ProtocolError(f"Connection broken: {exc!r}", exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ProtocolError(f"Connection broken: {exc!r}", exc) from exc

    def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while data := self.read1():
            parts.append(data)
        return b"".join(parts)

    def _recv(self) -> bytes:
        wire = self._wire
        return wire.recv(_READ, self._timeout) if wire is not None else self._sock.recv(_READ)

    def _fill(self) -> None:
        data = self._recv()
        if data:
            self._buf += data
        elif self._framing == _UNTIL_CLOSE or self._left == _TRAILER:  # http.client: a trailer may end at EOF
            self._will_close = True
            self.done = True
        elif self._framing == _CHUNKED and self._left == _SIZE_LINE and self._buf:
            self._will_close = True
            self._buf += b"\n"  # a last size line without its end: http.client reads it as it is
        elif self._framing == _CHUNKED:
            raise http.client.IncompleteRead(b"")
        else:
            raise IncompleteRead(self._received, self._left)

    def _take(self) -> bytes:
        """The body bytes the buffer holds, consumed; chunk framing removed."""
        buf = self._buf
        if self._framing == _LENGTH:
            data, self._buf = buf[:self._left], buf[self._left:]
            self._left -= len(data)
            self._received += len(data)
            if not self._left:
                self.done = True
            return data
        if self._framing == _UNTIL_CLOSE:
            self._buf = b""
            return buf
        parts = []
        pos, size = 0, len(buf)
        left = self._left
        if left == _SIZE_LINE:  # whole chunks with plain size lines, as servers send them: the loop below, tighter
            find = buf.find
            while pos < size:
                end = find(b"\n", pos, pos + 18)
                try:
                    count = int(buf[pos:end], 16) if end > 0 else 0
                except ValueError:
                    break
                if count <= 0 or end + count + 3 > size:
                    break
                parts.append(buf[end + 1:end + 1 + count])
                pos = end + count + 3
        while pos < size:
            if left > 0:
                end = min(pos + left, size)
                parts.append(buf[pos:end])
                left -= end - pos
                pos = end
                if left:
                    break
                left = _DATA_END
            elif left == _DATA_END:
                if size - pos < 2:
                    break
                pos += 2  # the CRLF after a chunk's data (http.client reads two bytes and looks no further)
                left = _SIZE_LINE
            else:
                end = buf.find(b"\n", pos)
                if end < 0 and size - pos <= _MAXLINE:
                    break
                if end < 0 or end + 1 - pos > _MAXLINE:
                    if parts:  # the data before it first, as http.client hands out a chunk before the next size
                        break
                    raise http.client.LineTooLong("chunk size" if left == _SIZE_LINE else "trailer line")
                line = buf[pos:end + 1]
                if left == _TRAILER:
                    pos = end + 1
                    if line in _EMPTY_LINES:
                        self._buf = buf[pos:]
                        self._left = 0
                        self.done = True
                        return b"".join(parts)
                    continue
                cut = line.find(b";")
                try:
                    count = int(line[:cut] if cut >= 0 else line, 16)
                except ValueError:
                    count = -1
                if count < 0:
                    if parts:
                        break
                    raise http.client.IncompleteRead(b"")
                pos = end + 1
                if count and pos + count + 2 <= size:  # the whole chunk and its CRLF are here: taken at once
                    parts.append(buf[pos:pos + count])
                    pos += count + 2
                    continue
                left = count if count else _TRAILER
        self._buf = buf[pos:]
        self._left = left
        return b"".join(parts)

    # -- the connection ------------------------------------------------------------------------------------------

    def settimeout(self, seconds: float | None) -> None:
        """Each later read's timeout (None: none): over the wire, applied when a read waits (config.wire sets
        SO_RCVTIMEO only when it must change); else the socket's own timeout."""
        if self._wire is not None:
            self._timeout = seconds
        else:
            self._sock.settimeout(seconds)

    def close(self) -> None:
        """Discard the connection (the answer was not read to its end)."""
        if self._conn is not None:
            self._conn.close()

    def release_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if not self.done or self._will_close or self._buf:
            conn.close()
        conn_give(self._pool, conn)


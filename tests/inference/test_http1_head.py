"""A head that arrived whole is read in one step (inference/providers/http1.py `Answer._head_at_once`): it must read
as the line-by-line reading reads it, the same status, headers, framing and what follows, or the same failure."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from inference.providers import http1


class _LineByLine(http1.Answer):
    """The head read line by line only (the reading a head that arrived whole takes a shortcut from)."""

    __slots__ = ()

    def _head_at_once(self) -> bool:
        return False


def _head_read(cls: type[http1.Answer], answer: bytes) -> Any:
    """What reading `answer` (delivered whole, then the end of the connection) gives: the head and what follows
    it, or the exception and its message."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(answer)
        theirs.shutdown(socket.SHUT_WR)
        read = cls(None, None, ours)  # type: ignore[arg-type]
        try:
            read._read_head()
        except Exception as exc:
            return type(exc).__name__, str(exc)
        return read.status, read.headers, read._framing, read._left, read._will_close, read.done, read._buf


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\n\tc\r\nconnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Cr: a\r\r\n\r\r\nx: y\r\n\r\n", b"HTTP/1.1 200 OK\r\nX-Bare: a\nB: c\r\n\r\n",
    b"HTTP/1.1 200 OK\nX-A: b\n\n", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", b"\r\nHTTP/1.1 200 OK\r\n\r\n", b"\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n", b"ICY 200 OK\r\n\r\n", b"HTTP/2.0 200 OK\r\n\r\n", b"HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"x-a: b\r\n" * 100 + b"\r\n", b"HTTP/1.1 200 OK\r\n" + b"x-a: b\r\n" * 101 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nx-a: " + b"b" * 70000 + b"\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n", b"HTTP/1.1 200 OK\r\nNoColon\r\n: v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\xe9t\xe9: \xff\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b"",
    # Framing headers in every spelling the plain reading must read as the line-by-line one does (or leave to it).
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \t\r\nConnection: Keep-Alive, Close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n Transfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx-transfer-encoding: chunked\r\nx: transfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\ncontent-length: \xa05\xa0\r\nx-a: \xe9\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\rb\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length:\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", b"HTTP/1.1 200\r\n\r\n",
])
def test_a_head_that_arrived_whole_reads_as_line_by_line(head: bytes) -> None:
    answer = head + b'event: ping\ndata: {"type": "ping"}\n\n'
    assert _head_read(http1.Answer, answer) == _head_read(_LineByLine, answer)

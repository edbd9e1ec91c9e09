"""The Anthropic API transport's own HTTP/1.1 exchange (inference/providers/http1.py), against a real socket.

A server answers each request with canned bytes, written in two parts with a pause between (so the client reads
them apart: every split point of an answer is walked). Each case runs twice, on the direct exchange and on
urllib3's urlopen (the path it replaces, still used behind a proxy or with tracing): both must give the same
events, or fail with the same exception, the same root cause and the same error body.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from inference.providers.anthropic_api import AnthropicClient
from inference.streaming import collect

PARAMS = {"model": "claude-sonnet-5-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def event(kind: str, data: dict[str, Any], end: bytes = b"\n") -> bytes:
    return b"event: " + kind.encode() + end + b"data: " + json.dumps(data).encode() + end + end


EVENTS = [
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                          "model": "claude-sonnet-5-5", "stop_reason": None,
                                          "usage": {"input_tokens": 3, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "h\u00e9llo \u2603\n"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
]
# SSE as Anthropic sends it, plus what the format allows: a ping, a comment, CRLF line ends, "data:" without its
# space, an event's data over two lines.
SSE = (event("message_start", EVENTS[0]) + event("ping", {"type": "ping"}) + b": a comment\n\n"
       + event("content_block_start", EVENTS[1], b"\r\n")
       + b"event:content_block_delta\ndata:" + json.dumps(EVENTS[2]).encode() + b"\n\n"
       + b'event: content_block_stop\ndata: {"type": "content_block_stop",\ndata:  "index": 0}\n\n'
       + event("message_delta", EVENTS[4]) + event("message_stop", EVENTS[5]))
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nrequest-id: req_1\r\n"


def chunked(body: bytes, sizes: tuple[int, ...] = (7, 1, 100, 3), trailer: bytes = b"") -> bytes:
    """`body` in chunks of `sizes` (then of the last size), one with a chunk extension, and the last chunk."""
    out, pos, i = b"", 0, 0
    while pos < len(body):
        size = sizes[min(i, len(sizes) - 1)]
        piece = body[pos:pos + size]
        out += b"%x%s\r\n%s\r\n" % (len(piece), b";ext=1" if i == 1 else b"", piece)
        pos, i = pos + size, i + 1
    return out + b"0\r\n" + trailer + b"\r\n"


class Canned:
    """A server that answers each request with `answer`, written as answer[:split] and, a moment later,
    answer[split:]."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.listener.getsockname()[1]}"
        self.answer = b""
        self.split = 0
        self.keep_alive = False
        self.stall = 0.0  # seconds of silence after the answer, before the connection is closed
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # part two not held back for an ACK
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        """Answer requests on `conn`: until the client leaves with `keep_alive`, else one."""
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):  # a client that refused the certificate
                conn.close()
                return
        with conn:
            request = b""
            while True:
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        return
                    request += data
                head, _, body = request.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                request = body[length:]
                self.requests.append(head + b"\r\n\r\n" + body[:length])
                answer, split = self.answer, self.split
                try:
                    conn.sendall(answer[:split])
                    time.sleep(0.002)
                    conn.sendall(answer[split:])
                except OSError:
                    return
                time.sleep(self.stall)
                if not self.keep_alive:
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def canned() -> Iterator[Canned]:
    server = Canned()
    yield server
    server.close()


def clients(url: str) -> tuple[AnthropicClient, AnthropicClient]:
    direct = AnthropicClient(api_key="sk-ant-x", base_url=url, timeout=5)
    assert direct._direct is not None
    pooled = AnthropicClient(api_key="sk-ant-x", base_url=url, timeout=5)
    pooled._direct = None  # urllib3's urlopen, as behind a proxy
    return direct, pooled


def root(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return type(exc).__name__


def streamed(client: AnthropicClient, timeout: float = 5) -> Any:
    """The events of a stream, or (exception type, root cause, status, body, events before it)."""
    events: list[Any] = []
    try:
        for item in client.messages_stream_raw({**PARAMS, "stream": True}, timeout,
                                               first_event_by=time.monotonic() + timeout):
            events.append(item)
    except (anthropic.APIError, ValueError) as exc:
        return (type(exc).__name__, root(exc), getattr(exc, "status_code", None), getattr(exc, "body", None),
                events)
    return events


def created(client: AnthropicClient) -> Any:
    try:
        return client.messages_create_raw(dict(PARAMS), 5)
    except (anthropic.APIError, ValueError) as exc:
        return (type(exc).__name__, root(exc), getattr(exc, "status_code", None), getattr(exc, "body", None))


def both(canned: Canned, answer: bytes, call: Any = streamed, split: int = 0) -> Any:
    canned.answer, canned.split = answer, split
    direct, pooled = clients(canned.url)
    outcome = call(direct)
    assert outcome == call(pooled)
    return outcome


def test_every_split_point_of_a_chunked_stream_gives_the_same_events(canned: Canned) -> None:
    answer = SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(SSE, trailer=b"x-trailer: 1\r\n")
    canned.answer, canned.keep_alive = answer, True
    direct, _ = clients(canned.url)
    try:
        for split in range(1, len(answer)):
            canned.split = split
            assert streamed(direct) == EVENTS, f"split at {split}: {answer[:split][-20:]!r}"
    finally:
        canned.keep_alive = False
    assert direct._pool.num_connections == 1  # each answer read to its end: the connection served them all
    assert both(canned, answer, split=len(answer) // 2) == EVENTS


def test_every_split_point_of_a_stream_read_to_its_close(canned: Canned) -> None:
    answer = SSE_HEAD + b"connection: close\r\n\r\n" + SSE
    canned.answer = answer
    direct, _ = clients(canned.url)
    for split in range(1, len(answer)):
        canned.split = split
        assert streamed(direct) == EVENTS, f"split at {split}"
    assert both(canned, answer, split=100) == EVENTS


def test_the_request_is_what_urllib3_sends(canned: Canned) -> None:
    canned.answer = SSE_HEAD + b"content-length: %d\r\n\r\n" % len(SSE) + SSE
    direct, pooled = clients(canned.url)
    canned.requests.clear()
    streamed(direct)
    streamed(pooled)
    created(direct)
    created(pooled)
    assert canned.requests[0] == canned.requests[1] and canned.requests[2] == canned.requests[3]
    assert b"accept: text/event-stream" in canned.requests[0] and b"accept: application/json" in canned.requests[2]
    betas = []
    for client in (direct, pooled):
        client.messages_stream_raw(dict(PARAMS), 5, betas=("a-1", "b-2")).close()
        betas.append(canned.requests[-1])
    assert betas[0] == betas[1] and b"\r\nanthropic-beta: a-1,b-2\r\n" in betas[0]


@pytest.mark.parametrize("size", ["zz", "", "1" * 70000])
def test_a_malformed_chunk_size_is_a_broken_connection(canned: Canned, size: str) -> None:
    first = SSE[:SSE.index(b"event: ping")]  # the first event, whole
    answer = SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(first)[:-5] + size.encode() + b"\r\n"
    outcome = both(canned, answer)
    assert outcome[:3] == ("APIConnectionError", "LineTooLong" if len(size) > 65536 else "IncompleteRead", None)
    assert outcome[4] == EVENTS[:1]  # the events before the damage were handed out


@pytest.mark.parametrize("cut", [1, 30, 200, 700])
def test_a_connection_closed_mid_event(canned: Canned, cut: int) -> None:
    answer = SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(SSE)[:cut]
    assert both(canned, answer)[:3] == ("APIConnectionError", "IncompleteRead", None)
    length = SSE_HEAD + b"content-length: %d\r\n\r\n" % len(SSE) + SSE[:cut]
    assert both(canned, length)[:3] == ("APIConnectionError", "IncompleteRead", None)
    # Read to its close, the answer just ends: the events so far, and no message without its stop reason.
    until_close = SSE_HEAD + b"connection: close\r\n\r\n" + SSE[:SSE.index(b"event: message_delta") + cut % 40]
    events = both(canned, until_close)
    assert events == EVENTS[:4]
    with pytest.raises(anthropic.APIConnectionError, match="ended before message_stop"):
        collect(events[0], iter(events[1:]))


def test_a_last_chunk_cut_in_its_line_ends_the_stream_as_http_client_reads_it(canned: Canned) -> None:
    assert both(canned, SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(SSE)[:-3]) == EVENTS
    assert both(canned, SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(SSE)[:-2]) == EVENTS


def test_a_stream_that_stalls_after_its_first_event_times_out_on_the_read_timeout(canned: Canned) -> None:
    answer = SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(SSE[:SSE.index(b"event: ping")])[:-5]
    canned.stall = 1.5
    try:
        outcome = both(canned, answer, lambda client: streamed(client, timeout=0.5))
    finally:
        canned.stall = 0.0
    assert outcome[0] == "APITimeoutError" and outcome[4] == EVENTS[:1]


def test_a_huge_event_in_many_chunks(canned: Canned) -> None:
    text = "\u00e9x" * 600_000
    big = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    body = SSE.replace(b"event:content_block_delta\ndata:" + json.dumps(EVENTS[2]).encode(),
                       b"event: content_block_delta\ndata: " + json.dumps(big).encode())
    answer = SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(body, (5000, 16383, 70001))
    events = both(canned, answer, split=len(answer) // 3)
    assert events[2]["delta"]["text"] == text and len(events) == len(EVENTS)


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_an_error_status_with_a_json_body(canned: Canned, framing: str) -> None:
    body = json.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}).encode()
    head = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 7\r\n"
    answer = head + {"length": b"content-length: %d\r\n\r\n" % len(body) + body,
                     "chunked": b"transfer-encoding: chunked\r\n\r\n" + chunked(body),
                     "close": b"connection: close\r\n\r\n" + body}[framing]
    for split in (5, len(head) + 3, len(answer) - 2):
        outcome = both(canned, answer, split=split)
        assert outcome[:4] == ("RateLimitError", "RateLimitError", 429, json.loads(body))
        assert both(canned, answer, created, split=split) == outcome[:4]


def test_an_error_event_mid_stream(canned: Canned) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    body = event("message_start", EVENTS[0]) + event("error", error)
    outcome = both(canned, SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(body))
    assert outcome == ("APIStatusError", "APIStatusError", 200, error, EVENTS[:1])


@pytest.mark.parametrize("answer", [
    b"", b"HTTP/1.1\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n", b"ICY 200 OK\r\n\r\n", b"HTTP/2.0 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"x-a: b\r\n" * 101 + b"\r\n", b"HTTP/1.1 200 OK\r\nx-a: " + b"b" * 70000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabc",
])
def test_a_malformed_head_fails_as_it_did(canned: Canned, answer: bytes) -> None:
    outcome = both(canned, answer, split=len(answer) // 2)
    assert outcome[0] == "APIConnectionError"


def test_a_non_streaming_answer_and_leniencies_http_client_allows(canned: Canned) -> None:
    message = {"id": "msg_1", "type": "message", "content": [{"type": "text", "text": "ok"}]}
    body = json.dumps(message).encode()
    for answer in (b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body,
                   b"HTTP/1.1 200 OK\ntransfer-encoding: chunked\n\n" + chunked(body).replace(b"0\r\n\r\n", b"0\n\n"),
                   b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nX-Folded: a\r\n b\r\n\r\n" + body):
        assert both(canned, answer, created, split=20) == message


def test_a_stream_read_to_its_end_on_a_kept_connection_is_reused(sim: Any) -> None:
    client = AnthropicClient(api_key="sk-ant-x", base_url=f"{sim.url}/anthropic", timeout=5)
    for _ in range(3):
        assert collect(*_first_and_rest(client))["stop_reason"] in ("end_turn", "max_tokens")
        assert client.messages_create_raw(dict(PARAMS), 5)["type"] == "message"
    assert client._pool.num_connections == 1


def _first_and_rest(client: AnthropicClient) -> tuple[Any, Iterator[Any]]:
    events = iter(client.messages_stream_raw({**PARAMS, "stream": True}, 5))
    return next(events), events


def certificate(tmp_path: Any) -> tuple[ssl.SSLContext, str]:
    """A server context with a self-signed certificate for 127.0.0.1, and the file a client trusts it by."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "atrium test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


def test_over_tls_the_certificate_is_checked_and_the_stream_read(tmp_path: Any) -> None:
    context, cafile = certificate(tmp_path)
    server = Canned(tls=context)
    try:
        server.answer = SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(SSE)
        # Against certifi's bundle (the production setting) the self-signed certificate is refused, on both paths.
        refused = both(server, server.answer, split=40)
        assert refused[:2] == ("APIConnectionError", "SSLError")
        server.keep_alive = True
        direct, pooled = clients(server.url)
        for client in (direct, pooled):
            client._pool.ca_certs = cafile  # type: ignore[union-attr]
            for split in (1, 60, 200, 500):
                server.split = split
                assert streamed(client) == EVENTS
            assert client._pool.num_connections == 1  # type: ignore[union-attr]
        assert direct._direct is not None and isinstance(direct._pool.pool.queue[-1].sock,  # type: ignore[union-attr]
                                                          ssl.SSLSocket)
    finally:
        server.close()


def test_a_refused_connection_fails_as_it_did() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()  # nothing listens there now
    direct, pooled = clients(url)
    outcome = streamed(direct)
    assert outcome == streamed(pooled) and outcome[:2] == ("APITimeoutError", "ConnectionRefusedError")
    assert created(direct) == created(pooled) == outcome[:4]


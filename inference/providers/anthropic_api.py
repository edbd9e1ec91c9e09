"""The Anthropic API: an API key from the tenant's settings or ANTHROPIC_API_KEY.

Messages calls, the gateway's hot path, are sent over a urllib3 connection pool rather than through the official
SDK client's request machinery (`AnthropicClient.messages_create_raw`, `messages_stream_raw`): the same request the
SDK would send (URL, headers, JSON body), the same events out of a stream, and the SDK's own exception classes on
failure, at about half the client-side cost (the SDK's request building and its HTTP stack take longer than the
loopback round trip: docs/benchmarks.md). The client is the SDK's all the same: any other endpoint goes through it.
The request is written and its answer read over the pool's connection by `inference.providers.http1` (urllib3's
urlopen only through a proxy or with tracing on).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import anthropic
import certifi
import httpx2
import urllib3
from django.conf import settings

from config.http import Framed
from inference.errors import ProviderMisconfigured
from inference.providers import http1
from inference.types import ProviderTarget

API_VERSION = "2023-06-01"
# json.dumps(body, separators=(",", ":")), without building an encoder for each request.
_compact = json.JSONEncoder(separators=(",", ":")).encode


class AnthropicClient(anthropic.Anthropic):
    """The SDK client plus a pooled direct path for Messages calls (non-streaming and streaming)."""

    def __init__(self, *, api_key: str, base_url: str | None, timeout: float) -> None:
        # Retries off: the router owns retries and failover, and an SDK retry would spend the request's deadline.
        super().__init__(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)
        self._messages_url = str(self.base_url).rstrip("/") + "/v1/messages"
        self._path = urllib3.util.parse_url(self._messages_url).request_uri
        # One pool for the one host (no per-call URL parsing); certificates checked against certifi's bundle, and
        # HTTP(S)_PROXY / NO_PROXY honoured, as the SDK's own client does.
        tls: dict[str, Any] = {"ca_certs": certifi.where()} if self._messages_url.startswith("https:") else {}
        proxy = _proxy_for(self._messages_url)
        self._pool: urllib3.HTTPConnectionPool | urllib3.ProxyManager
        self._headers = {"x-api-key": api_key, "anthropic-version": API_VERSION, "content-type": "application/json",
                         "accept": "application/json", "user-agent": f"atrium {self.user_agent}"}
        self._stream_headers = {**self._headers, "accept": "text/event-stream"}
        # The direct exchange (inference.providers.http1) talks to the host itself: through a proxy, or with a
        # header http.client would refuse, requests go through urllib3's urlopen as before.
        self._direct: urllib3.HTTPConnectionPool | None = None
        if proxy:
            self._pool = urllib3.ProxyManager(proxy, maxsize=64, block=False, retries=False, **tls)
            self._target = self._messages_url  # a proxy is asked for the absolute URL
        else:
            pool = urllib3.connection_from_url(self._messages_url, maxsize=64, block=False, retries=False, **tls)
            self._pool, self._target = pool, self._path
            if all(_header_ok(value) for value in self._headers.values()):
                self._direct = pool
                host = str(pool.host).strip("[]")
                host = f"[{host}]" if ":" in host else host  # as http.client writes an IPv6 address
                if pool.port != (443 if self._messages_url.startswith("https:") else 80):
                    host = f"{host}:{pool.port}"
                # What urllib3 (http.client) sends, in its order: Host, Accept-Encoding, Content-Length, ours.
                line = f"POST {self._path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"
                self._request_line = line.encode("latin-1")
                self._head_json = "".join(f"{k}: {v}\r\n" for k, v in self._headers.items()).encode("latin-1")
                self._head_stream = "".join(f"{k}: {v}\r\n" for k, v in self._stream_headers.items()).encode(
                    "latin-1")

    def messages_create_raw(self, body: dict[str, Any], timeout: Any, betas: Sequence[str] = ()) -> Any:
        """POST /v1/messages; the decoded JSON. Raises what `messages.create` would (APIStatusError subclasses,
        APITimeoutError, APIConnectionError)."""
        payload = _compact(body).encode()
        request = self._direct_request(payload, self._head_json, betas) if self._direct_now() else None
        if request is not None:
            connect, read = _limits(timeout)
            answer, data = self._exchange(request, payload, connect, read, None, preload=True)
            status = answer.status
        else:
            headers = {**self._headers, "anthropic-beta": ",".join(betas)} if betas else self._headers
            response = self._send(payload, headers, timeout, preload=True)
            status, data = response.status, response.data
        try:
            return json.loads(data)
        except ValueError as exc:
            raise anthropic.APIResponseValidationError(
                response=httpx2.Response(status, content=data, request=self._failed_request(payload)),
                body=data.decode(errors="replace"), message="provider answered with something other than JSON",
            ) from exc

    def messages_stream_raw(self, body: dict[str, Any], timeout: Any, betas: Sequence[str] = (),
                            first_event_by: float | None = None) -> DirectStream:
        """POST /v1/messages with `stream: true`; the open stream. Status errors raise here, as the SDK's do.

        `first_event_by` (a time.monotonic() value): the connection, the answer's headers and its first event must
        all arrive by then, else APITimeoutError (the first-byte budget of an attempt run in the request's own
        thread, inference.attempts); the events after the first are read with `timeout`'s read timeout."""
        payload = _compact(body).encode()
        request = self._direct_request(payload, self._head_stream, betas) if self._direct_now() else None
        if request is not None:
            connect, read = _limits(timeout)
            opened, _ = self._exchange(request, payload, connect, read, first_event_by, preload=False)
            return DirectStream(self, opened, payload, first_event_by=first_event_by, read_timeout=read)
        headers = {**self._stream_headers, "anthropic-beta": ",".join(betas)} if betas else self._stream_headers
        limits = _timeout(timeout)
        response = self._send(payload, headers, limits if first_event_by is None else _until(limits, first_event_by),
                              preload=False)
        return DirectStream(self, response, payload, first_event_by=first_event_by, read_timeout=limits.read_timeout)

    def _direct_now(self) -> bool:
        """Whether this call may take the direct exchange: no proxy, and urllib3 not instrumented (with tracing on,
        OpenTelemetry wraps urlopen to make each request's client span, so requests go through urlopen)."""
        return self._direct is not None and not hasattr(urllib3.HTTPConnectionPool.urlopen, "__wrapped__")

    def _direct_request(self, payload: bytes, head: bytes, betas: Sequence[str]) -> bytes | None:
        """The whole request as urllib3 would send it; None if a beta name is no valid header value (urlopen then
        raises what it always did)."""
        if betas:
            value = ",".join(betas)
            if not _header_ok(value):
                return None
            head += b"anthropic-beta: " + value.encode("latin-1") + b"\r\n"
        return b"%sContent-Length: %d\r\n%s\r\n%s" % (self._request_line, len(payload), head, payload)

    def _exchange(self, request: bytes, payload: bytes, connect: float, read: float, first_event_by: float | None,
                  *, preload: bool) -> tuple[http1.Answer, bytes]:
        """`_send` over the direct exchange: the answer of a 2xx and its body if `preload` (else b""), or the SDK's
        exception for what happened, raised as `_send` raises it (a failure reading the body of an error status
        while streaming included: urllib3's own exception, as there)."""
        data = b""
        assert self._direct is not None
        try:
            answer = http1.exchange(self._direct, self._messages_url, request, connect_timeout=connect,
                                    read_timeout=read, read_by=first_event_by)
            if preload:
                try:
                    data = answer.read()
                finally:
                    answer.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise self.transport_error(exc, payload) from exc
        if answer.status >= 400:
            try:
                data = data if preload else answer.read()
            finally:
                answer.release_conn()
            raise self._make_status_error_from_response(httpx2.Response(
                answer.status, headers=answer.headers, content=data, request=self._failed_request(payload)))
        return answer, data

    def _send(self, payload: bytes, headers: dict[str, str], timeout: Any, *, preload: bool) -> Any:
        """The response of a 2xx, else the SDK's exception for what happened."""
        try:
            response = self._pool.urlopen("POST", self._target, body=payload, headers=headers,
                                          timeout=timeout if isinstance(timeout, urllib3.Timeout) else
                                          _timeout(timeout), retries=False, redirect=False, preload_content=preload)
        except urllib3.exceptions.HTTPError as exc:
            raise self.transport_error(exc, payload) from exc
        if response.status >= 400:
            try:
                data = response.data if preload else response.read()
            finally:
                response.release_conn()
            raise self._make_status_error_from_response(httpx2.Response(
                response.status, headers=dict(response.headers), content=data,
                request=self._failed_request(payload)))
        return response

    def transport_error(self, exc: BaseException, payload: bytes) -> anthropic.APIConnectionError:
        """The SDK's exception for a request that got no answer: APITimeoutError or APIConnectionError."""
        if isinstance(exc, urllib3.exceptions.TimeoutError):
            return anthropic.APITimeoutError(request=self._failed_request(payload))
        return anthropic.APIConnectionError(message=f"Connection error: {exc}", request=self._failed_request(payload))

    def _failed_request(self, payload: bytes) -> httpx2.Request:
        """The request as the SDK's exceptions carry it (built only when something failed)."""
        return httpx2.Request("POST", self._messages_url, content=payload)


class DirectStream:
    """The events of a streaming Messages response, as the SDK's `Stream` yields them: every event with data but
    `ping`; an `event: error` raises the SDK's APIStatusError; a broken connection raises APIConnectionError (or
    APITimeoutError). `close()` gives the connection back to the pool when the stream was read to its end, and
    discards it otherwise."""

    def __init__(self, client: AnthropicClient, response: Any, payload: bytes, *, first_event_by: float | None = None,
                 read_timeout: float | None = None) -> None:
        self._client = client
        self._response = response
        self._payload = payload
        self._finished = False
        self._closed = False
        self._first_event_by = first_event_by  # until the first event: every read ends by then
        self._read_timeout = read_timeout  # after it: each read's own timeout, as for any stream
        # Events relayed to a client (inference.router.route_stream sets this once the stream is chosen) come as
        # Framed events, with their bytes; folded into a Message (a non-streaming call), plain dicts.
        self.framed = False
        self._batch: list[tuple[bytes, bytes]] = []  # the events of the last read, handed out up to `_at`
        self._at = 0

    def __iter__(self) -> Iterator[Any]:
        return self._events()

    def ready(self) -> tuple[bytes, bytes] | None:
        """The next event (its name and data, undecoded) if it has arrived already: handing it out will not wait
        for the provider. None if the next event is yet to be read."""
        batch, at = self._batch, self._at
        return batch[at] if at < len(batch) else None

    def _events(self) -> Iterator[Any]:
        try:
            for batch in self._sse():
                self._batch = batch
                for at, (event, data) in enumerate(batch, 1):
                    self._at = at
                    decoded = self._decoded(event, data)
                    if self._first_event_by is not None:
                        self._first_event_by = None
                        self._socket_timeout(self._read_timeout)
                    yield decoded
        finally:
            self.close()

    def _sse(self) -> Iterator[list[tuple[bytes, bytes]]]:
        """For each read, the events it completed: (event, data) of each with an event name and data, `ping`
        excepted; read as the SDK's decoder reads SSE (a line ends at LF, a CR before it dropped; a blank line ends
        an event).

        While no CR has arrived, what has arrived is cut at its last blank line and each event between blank lines
        read in one step (`event: x` then one `data: ` line, the form providers send); once a CR arrives, line by
        line from there on."""
        pending = b""  # the start of an event that has not ended yet (no CR: at an event's start)
        while True:
            chunk = self._read()
            if not chunk:
                self._finished = True
                return
            if b"\r" in chunk:
                break
            if pending:
                searched = len(pending) - 1
                chunk = pending + chunk
            else:
                searched = 0
                if chunk[:7] == b"event: " and chunk[-2:] == b"\n\n":  # one event in the read, as often
                    line = chunk.find(b"\n")
                    if chunk[line + 1:line + 7] == b"data: " and chunk.find(b"\n", line + 7) == len(chunk) - 2:
                        event = chunk[7:line]
                        yield [(event, chunk[line + 7:-2])] if event != b"ping" else []
                        continue
            cut = chunk.rfind(b"\n\n", searched)
            if cut < 0:
                pending = chunk
                continue
            pending = chunk[cut + 2:]
            batch: list[tuple[bytes, bytes]] = []
            for block in chunk[:cut].split(b"\n\n"):
                if block[:7] == b"event: ":
                    line = block.find(b"\n")
                    if line > 0 and block[line + 1:line + 7] == b"data: " and block.find(b"\n", line + 1) < 0:
                        event = block[7:line]
                        if event != b"ping":
                            batch.append((event, block[line + 7:]))
                        continue
                _lines(block.split(b"\n"), [None, []], True, batch)
            yield batch
        # Line by line from here on: every line of a read split at once, the start of an unended line kept.
        state: list[Any] = [None, []]  # the event being read: its name, its data lines
        lines = (pending + chunk).split(b"\n")
        while True:
            tail = lines.pop()
            batch = []
            _lines(lines, state, False, batch)
            yield batch
            chunk = self._read()
            if not chunk:
                self._finished = True
                return
            lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")

    def _read(self) -> bytes:
        by = self._first_event_by
        if by is not None:
            self._socket_timeout(max(by - time.monotonic(), 0.0005))
        try:
            chunk = bytes(self._response.read1(65536))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._client.transport_error(exc, self._payload) from exc
        if by is not None and time.monotonic() > by + 0.05:  # the socket's timeout did not hold (a bound anyway)
            raise anthropic.APITimeoutError(request=self._client._failed_request(self._payload))
        return chunk

    def _decoded(self, event: bytes, data: bytes) -> Any:
        """The event's data decoded: json.loads(data), in one call of the C scanner when `data` is plain UTF-8 JSON
        with nothing around it (anything else, whitespace, a BOM, invalid JSON or UTF-8, is left to json.loads,
        which decodes or raises); with `framed`, an object that was plain JSON on one line comes as a Framed event
        with its bytes, to be relayed as it came (config.http.sse). An `error` event raises."""
        if event != b"error":
            try:
                text = data.decode()
                value, end = _scan(text, 0)
            except (ValueError, StopIteration):
                return json.loads(data)
            if end != len(text):
                return json.loads(data)
            if self.framed and type(value) is dict and b"\n" not in data and b"\r" not in data:
                value = Framed(value)
                value.data = data
            return value
        try:
            body: Any = json.loads(data)
        except ValueError:
            body = data.decode(errors="replace")
        raise self._client._make_status_error(
            f"{body}", body=body, response=httpx2.Response(self._response.status, content=data,
                                                           request=self._client._failed_request(self._payload)))

    def _socket_timeout(self, seconds: float | None) -> None:
        """Set the timeout of the socket the answer is read from: the connection's, or (an answer that closes
        its connection, which http.client then detaches from the answer's connection) the one under the
        answer's own file object."""
        if isinstance(self._response, http1.Answer):
            self._response.settimeout(seconds)
            return
        connection = self._response.connection
        sock = getattr(connection, "sock", None) if connection is not None else None
        if sock is None:
            raw = getattr(getattr(getattr(self._response, "_fp", None), "fp", None), "raw", None)
            sock = getattr(raw, "_sock", None)
        if sock is not None:
            sock.settimeout(seconds)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._finished:
            self._response.close()  # unread data on it: the connection cannot be reused
        self._response.release_conn()


def _lines(lines: list[bytes], state: list[Any], ended: bool, out: list[tuple[bytes, bytes]]) -> None:
    """Append to `out` (event, data) of each event that `lines` (complete SSE lines, without their LF) end; `state`
    carries the event being read across calls ([name or None, data lines]); `ended`: a blank line follows."""
    event: bytes | None = state[0]
    data: list[bytes] = state[1]
    for line in lines:
        line = line.rstrip(b"\r")
        if line:
            if line[:6] == b"data: ":
                data.append(line[6:])
            elif line[:7] == b"event: ":
                event = line[7:]
            else:
                name, _, value = line.partition(b":")
                value = value[1:] if value[:1] == b" " else value
                if name == b"event":
                    event = value
                elif name == b"data":
                    data.append(value)
            continue
        if event is not None and event != b"ping" and data:  # a blank line ends an event
            out.append((event, data[0] if len(data) == 1 else b"\n".join(data)))
        event, data = None, []
    if ended:
        if event is not None and event != b"ping" and data:
            out.append((event, data[0] if len(data) == 1 else b"\n".join(data)))
        event, data = None, []
    state[0], state[1] = event, data


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # json.loads's C scanner, without the checks around it


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), if any."""
    parsed = urllib3.util.parse_url(url)
    if parsed.host and urllib.request.proxy_bypass(parsed.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parsed.scheme or "https") or proxies.get("all") or None


def _limits(timeout: Any) -> tuple[float, float]:
    """(connect, read) timeouts of a number or an SDK Timeout (unset: the request deadline)."""
    if isinstance(timeout, int | float):
        return float(timeout), float(timeout)
    read = timeout.read if timeout.read is not None else settings.ATRIUM_REQUEST_DEADLINE_S
    connect = timeout.connect if timeout.connect is not None else read
    return connect, read


def _timeout(timeout: Any) -> urllib3.Timeout:
    connect, read = _limits(timeout)
    return urllib3.Timeout(connect=connect, read=read)


# http.client's test of a header value (it refuses CR or LF not followed by whitespace: header injection).
_illegal_header_value = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search


def _header_ok(value: str) -> bool:
    """Whether http.client would send `value` as a header value (latin-1, no injected line)."""
    try:
        encoded = value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return _illegal_header_value(encoded) is None


def _until(limits: urllib3.Timeout, by: float) -> urllib3.Timeout:
    """`limits`, cut so that connecting and reading the answer's headers end by `by` (time.monotonic())."""
    left = max(by - time.monotonic(), 0.001)  # urllib3 takes no zero timeout: past `by`, a millisecond
    connect = limits.connect_timeout
    return urllib3.Timeout(connect=min(connect, left) if isinstance(connect, int | float) else left,
                           read=min(limits.read_timeout or left, left), total=left)


def build(target: ProviderTarget) -> AnthropicClient:
    api_key = target.credentials.get("api_key") or os.environ.get("ANTHROPIC_API_KEY")
    if not api_key:
        raise ProviderMisconfigured("anthropic: no API key (tenant credentials or ANTHROPIC_API_KEY)")
    return AnthropicClient(api_key=api_key, base_url=settings.ATRIUM_ANTHROPIC_BASE_URL,
                           timeout=settings.ATRIUM_REQUEST_DEADLINE_S)

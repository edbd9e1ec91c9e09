"""The Anthropic API: an API key from the tenant's settings or ANTHROPIC_API_KEY.

Messages calls, the gateway's hot path, are sent over a urllib3 connection pool rather than through the official
SDK client's request machinery (`AnthropicClient.messages_create_raw`, `messages_stream_raw`): the same request the
SDK would send (URL, headers, JSON body), the same events out of a stream, and the SDK's own exception classes on
failure, at about half the client-side cost (the SDK's request building and its HTTP stack take longer than the
loopback round trip: docs/benchmarks.md). The client is the SDK's all the same: any other endpoint goes through it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import anthropic
import certifi
import httpx2
import urllib3
from django.conf import settings

from inference.errors import ProviderMisconfigured
from inference.types import ProviderTarget

API_VERSION = "2023-06-01"


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
        if proxy:
            self._pool = urllib3.ProxyManager(proxy, maxsize=64, block=False, retries=False, **tls)
            self._target = self._messages_url  # a proxy is asked for the absolute URL
        else:
            self._pool = urllib3.connection_from_url(self._messages_url, maxsize=64, block=False, retries=False,
                                                     **tls)
            self._target = self._path
        self._headers = {"x-api-key": api_key, "anthropic-version": API_VERSION, "content-type": "application/json",
                         "accept": "application/json", "user-agent": f"atrium {self.user_agent}"}
        self._stream_headers = {**self._headers, "accept": "text/event-stream"}

    def messages_create_raw(self, body: dict[str, Any], timeout: Any, betas: Sequence[str] = ()) -> Any:
        """POST /v1/messages; the decoded JSON. Raises what `messages.create` would (APIStatusError subclasses,
        APITimeoutError, APIConnectionError)."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        headers = {**self._headers, "anthropic-beta": ",".join(betas)} if betas else self._headers
        response = self._send(payload, headers, timeout, preload=True)
        try:
            return json.loads(response.data)
        except ValueError as exc:
            raise anthropic.APIResponseValidationError(
                response=httpx2.Response(response.status, content=response.data, request=self._failed_request(payload)),
                body=response.data.decode(errors="replace"), message="provider answered with something other "
                                                                     "than JSON") from exc

    def messages_stream_raw(self, body: dict[str, Any], timeout: Any, betas: Sequence[str] = (),
                            first_event_by: float | None = None) -> DirectStream:
        """POST /v1/messages with `stream: true`; the open stream. Status errors raise here, as the SDK's do.

        `first_event_by` (a time.monotonic() value): the connection, the answer's headers and its first event must
        all arrive by then, else APITimeoutError (the first-byte budget of an attempt run in the request's own
        thread, inference.attempts); the events after the first are read with `timeout`'s read timeout."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        headers = {**self._stream_headers, "anthropic-beta": ",".join(betas)} if betas else self._stream_headers
        limits = _timeout(timeout)
        response = self._send(payload, headers, limits if first_event_by is None else _until(limits, first_event_by),
                              preload=False)
        return DirectStream(self, response, payload, first_event_by=first_event_by, read_timeout=limits.read_timeout)

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

    def __iter__(self) -> Iterator[Any]:
        return self._events()

    def _events(self) -> Iterator[Any]:
        buffer = b""
        event: str | None = None
        data: list[bytes] = []
        try:
            while True:
                chunk = self._read()
                if not chunk:
                    self._finished = True
                    return
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line, buffer = buffer[:end].rstrip(b"\r"), buffer[end + 1:]
                    if line:
                        name, _, value = line.partition(b":")
                        value = value[1:] if value.startswith(b" ") else value
                        if name == b"event":
                            event = value.decode()
                        elif name == b"data":
                            data.append(value)
                        continue
                    if event is not None and event != "ping" and data:  # a blank line ends an event
                        decoded = self._decoded(event, b"\n".join(data))
                        if self._first_event_by is not None:
                            self._first_event_by = None
                            self._socket_timeout(self._read_timeout)
                        yield decoded
                    event, data = None, []
        finally:
            self.close()

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

    def _decoded(self, event: str, data: bytes) -> Any:
        if event != "error":
            return json.loads(data)
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


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), if any."""
    parsed = urllib3.util.parse_url(url)
    if parsed.host and urllib.request.proxy_bypass(parsed.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parsed.scheme or "https") or proxies.get("all") or None


def _timeout(timeout: Any) -> urllib3.Timeout:
    if isinstance(timeout, int | float):
        return urllib3.Timeout(connect=float(timeout), read=float(timeout))
    read = timeout.read if timeout.read is not None else settings.ATRIUM_REQUEST_DEADLINE_S
    connect = timeout.connect if timeout.connect is not None else read
    return urllib3.Timeout(connect=connect, read=read)


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

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
from collections.abc import Sequence
from typing import Any

import anthropic
import certifi
import httpx2
import urllib3
from django.conf import settings

from config import jsonfast
from inference.errors import ProviderMisconfigured
from inference.providers import http1
from inference.providers.anthropic_stream import DirectStream
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
        payload = jsonfast.dumps(body)
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
        payload = jsonfast.dumps(body)
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

"""The WSGI lane of the Anthropic-compatible API: /v1/* served without Django's handler and middleware chain.

A /v1 call needs what the top of the middleware list gives it (config/settings/base.py, down to
ApiFastPathMiddleware): the tenant of the host, the request id, the body limit, the security headers, the API view.
Django's generic machinery around them (the handler, a wrapper per middleware, signals dispatched through the
Signal machinery, a header validation per header set) cost about a tenth of a /v1 call's CPU (docs/benchmarks.md).
This lane does the same steps in the same order, with the same middleware instances where they decide anything:

- the request: set_script_prefix, request_started's receivers, WSGIRequest (lazy, as Django builds it);
- TenantMiddleware (the handler's own instance): host validation (ALLOWED_HOSTS, DisallowedHost), the cached host
  -> tenant lookup, the suspended and unknown-host answers, connection.set_tenant only when needed, the URLconf;
  the host -> hostname step is remembered per Host header value (what Django's get_host decides depends on the
  header and the settings only);
- the request id (config.middleware: X-Request-Id validated, contextvar, trace id, `request-id` header);
- the body limit (config.request_limits: 413 in Anthropic's error shape, before a byte is read);
- SecurityMiddleware's redirect (the handler's instance) and its headers, Permissions-Policy: the same values,
  added to the header list with the same "unless the response set it" rules;
- ApiFastPathMiddleware (the handler's instance): the view, or Django's remaining chain for a site without /v1/
  (the public host: today's 404);
- an exception becomes Django's response_for_exception answer at the same place as in the chain (the view's: with
  every header; the tenant lookup's: bare), so the API's error JSON (config/error_views.py), never a traceback;
- request_finished's receivers when the response is closed (DB connection hygiene: close_old_connections with
  CONN_MAX_AGE and health checks, close_caches).

The lane serves only when the handler's chain starts with exactly those middleware (else every request takes
Django's path: a middleware added above the fast path is never skipped), when tracing is off (the OpenTelemetry
Django instrumentation is a middleware: with tracing on, /v1 keeps Django's path and its spans), and only /v1/.
When a signal has receivers other than Django's own, the signal is sent as Django sends it.
"""

from __future__ import annotations

import contextlib
import functools
import time
import weakref
from asyncio import _get_running_loop
from collections.abc import Callable, Iterable
from typing import Any

from django.core import signals
from django.core.cache import caches, close_caches
from django.core.handlers.base import reset_urlconf
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name
from django.core.signals import setting_changed
from django.db import close_old_connections, connections, reset_queries
from django.db.backends.base.base import BaseDatabaseWrapper
from django.dispatch import Signal
from django.http import HttpRequest
from django.http.response import ResponseHeaders
from django.middleware.security import SecurityMiddleware
from django.urls import base as urls_base
from django.urls import set_script_prefix, set_urlconf
from django.utils.log import log_response

from config import thread_locals
from config.middleware import (
    ApiFastPathMiddleware,
    RequestIdMiddleware,
    TenantMiddleware,
    request_id_enter,
    request_id_exit,
)
from config.request_limits import BodyLimitMiddleware, body_refusal
from config.security_headers import PermissionsPolicyMiddleware
from config.settings_once import setting_flag
from config.tracing import tracing_on

PREFIX = "/v1/"
# The top of settings.MIDDLEWARE the lane stands for, in order.
CHAIN = (TenantMiddleware, RequestIdMiddleware, BodyLimitMiddleware, SecurityMiddleware, PermissionsPolicyMiddleware,
         ApiFastPathMiddleware)
# django.urls' per-thread URLconf and script prefix (asgiref Locals, created once with the module)
_URLCONFS: Any = urls_base._urlconfs  # type: ignore[attr-defined]
_PREFIXES: Any = urls_base._prefixes  # type: ignore[attr-defined]
_HOSTS_MAX = 1024  # distinct Host values remembered (a wildcard ALLOWED_HOSTS admits any number of them)


def handler_chain(handler: Any) -> list[Any] | None:
    """The handler's middleware instances, outermost first, down to ApiFastPathMiddleware; None when its chain does
    not start with exactly CHAIN (each layer is wrapped by convert_exception_to_response, which keeps __wrapped__)."""
    found: list[Any] = []
    layer = getattr(handler, "_middleware_chain", None)
    for expected in CHAIN:
        instance = getattr(layer, "__wrapped__", None)
        if type(instance) is not expected:
            return None
        found.append(instance)
        layer = getattr(instance, "get_response", None)
    return found


class _Receivers:
    """What a signal does, as a direct call when its receivers are Django's own ones (all senders), else None: the
    caller then sends the signal. Re-read when the signal's connections change (tests connect and disconnect)."""

    def __init__(self, signal: Signal, known: tuple[Callable[..., Any], ...],
                 fused: Callable[[], None] | None = None, any_order: bool = False) -> None:
        self.signal = signal
        self.known = known
        self.fused = fused  # does exactly what all of `known`, in that order, do
        # `known` are independent of each other: `fused` stands for them in any order (Django's test client
        # disconnects and reconnects close_old_connections around each request, which moves it last).
        self.any_order = any_order
        self.snapshot: list[Any] | None = None
        self.functions: tuple[Callable[..., Any], ...] | None = None
        self.fusable = False  # `functions` are all of `known`, in an order `fused` stands for

    def current(self) -> tuple[Callable[..., Any], ...] | None:
        receivers = self.signal.receivers
        if receivers != self.snapshot:
            self.snapshot = list(receivers)
            functions = self.functions = self._read(receivers)
            self.fusable = self.fused is not None and functions is not None and (
                functions == self.known or (self.any_order and len(functions) == len(self.known)
                                            and set(functions) == set(self.known)))
        return self.functions

    def _read(self, receivers: list[Any]) -> tuple[Callable[..., Any], ...] | None:
        any_sender = (id(None),)
        functions = []
        for entry in receivers:
            lookup_key, receiver = entry[0], entry[1]
            function = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
            if function is None or function not in self.known or lookup_key[1:] != any_sender:
                return None
            functions.append(function)
        return tuple(functions)

    def run(self, sender: type, **kwargs: Any) -> None:
        functions = self.current()
        if functions is None:
            self.signal.send(sender=sender, **kwargs)
        elif self.fusable:
            self.fused()  # type: ignore[misc]
        else:
            for function in functions:
                function(sender=sender, **kwargs)


def _started() -> None:
    """reset_queries then close_old_connections, in one pass over this thread's connections."""
    opened = thread_locals.initialized(connections)
    for conn in opened:
        conn.queries_log.clear()
    for conn in opened:
        _close_if_unusable_or_obsolete(conn)


def _finished() -> None:
    """close_old_connections, close_caches and reset_urlconf (independent of each other), without a call per
    receiver. This thread's connections, caches and URLconf read from their Locals' storage (config.thread_locals:
    what connections.all(initialized_only=True), caches.close_all() and set_urlconf(None) test, without an exception
    raised and caught for each one this thread never opened or set)."""
    for conn in thread_locals.initialized(connections):
        _close_if_unusable_or_obsolete(conn)
    for cache in thread_locals.initialized(caches):  # caches.close_all()
        cache.close()
    if thread_locals.has(_URLCONFS, "value"):  # set_urlconf(None) deletes the value when this thread has one
        set_urlconf(None)


# Django's own methods, as the lane found them at import: a backend (or a test) that replaces one of them gets it
# called. (ensure_connection is compared with BaseDatabaseWrapper's at the call: pytest-django swaps it there for a
# guard while database access is blocked.)
_CLOSE_CHECK = BaseDatabaseWrapper.close_if_unusable_or_obsolete
_GET_AUTOCOMMIT = BaseDatabaseWrapper.get_autocommit


def _close_if_unusable_or_obsolete(conn: Any) -> None:
    """conn.close_if_unusable_or_obsolete(), Django's (BaseDatabaseWrapper's), with its autocommit read as
    get_autocommit() reads it on an open connection, without the call: ensure_connection() connects nothing then,
    and its async_unsafe check passes without an event loop in the thread. A backend that overrides one of the three
    methods, or a thread running an event loop, gets the method itself."""
    kind = type(conn)
    if (kind.close_if_unusable_or_obsolete is not _CLOSE_CHECK or kind.get_autocommit is not _GET_AUTOCOMMIT
            or kind.ensure_connection is not BaseDatabaseWrapper.ensure_connection or _get_running_loop() is not None):
        conn.close_if_unusable_or_obsolete()
        return
    if conn.connection is None:
        return
    conn.health_check_done = False
    # If the application didn't restore the original autocommit setting, don't take chances: drop the connection.
    if conn.autocommit != conn.settings_dict["AUTOCOMMIT"]:
        conn.close()
        return
    # If an exception other than DataError or IntegrityError occurred since the last commit or rollback, check that
    # the connection works.
    if conn.errors_occurred:
        if not conn.is_usable():
            conn.close()
            return
        conn.errors_occurred = False
        conn.health_check_done = True
    if conn.close_at is not None and time.monotonic() >= conn.close_at:
        conn.close()


class _Hosts:
    """Host header value -> the tenant middleware's hostname, for the values Django accepted (ALLOWED_HOSTS).
    Forgotten when a setting changes (tests); refused hosts are never remembered (they raise each time)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        setting_changed.connect(self._forget)

    def _forget(self, **kwargs: Any) -> None:
        self.names = {}

    def hostname(self, tenants: TenantMiddleware, request: HttpRequest, environ: dict[str, Any]) -> str:
        raw = environ.get("HTTP_HOST")
        if raw is None or setting_flag("USE_X_FORWARDED_HOST", False):
            return tenants.hostname_or_empty(request)
        names = self.names
        name = names.get(raw)
        if name is None:
            name = tenants.hostname_or_empty(request)
            if name and len(names) < _HOSTS_MAX:
                names[raw] = name
        return name


def _stored(name: str, value: str) -> tuple[str, str]:
    """(name, value) as a response's header store keeps it, checked as `response[name] = value` checks it."""
    headers = ResponseHeaders({})
    headers[name] = value
    return headers._store[name.lower()]  # type: ignore[no-any-return]


def _security_headers(security: Any) -> tuple[tuple[str, str] | None, list[tuple[str, Any]]]:
    """The headers SecurityMiddleware.process_response adds, from the instance's own settings: the HSTS header
    (https only, unless set), and the ones it sets by default (unless set), lower-cased name first, in its order."""
    hsts = None
    if security.sts_seconds:
        value = f"max-age={security.sts_seconds}"
        if security.sts_include_subdomains:
            value += "; includeSubDomains"
        if security.sts_preload:
            value += "; preload"
        hsts = _stored("Strict-Transport-Security", value)
    defaults: list[tuple[str, str]] = []
    if security.content_type_nosniff:
        defaults.append(("X-Content-Type-Options", "nosniff"))
    policy = security.referrer_policy
    if policy:
        defaults.append(("Referrer-Policy", ",".join(
            [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy)))
    if security.cross_origin_opener_policy:
        defaults.append(("Cross-Origin-Opener-Policy", security.cross_origin_opener_policy))
    return hsts, [(name.lower(), _stored(name, value)) for name, value in defaults]


class _Body(list[bytes]):
    """A complete body, one piece, that the server closes after handing it over (ApiLane.server_closes_lists)."""

    __slots__ = ("close",)

    def __init__(self, content: bytes, close: Callable[[], None]) -> None:
        super().__init__((content,))
        self.close = close


class ApiLane:
    """WSGI application: /v1/* through the lane, everything else through `handler` (Django's WSGIHandler)."""

    def __init__(self, handler: WSGIHandler) -> None:
        self.handler = handler
        self.sender = type(handler)
        # Set when the server calls `close()` on a list it was handed, once it has its bytes (config.serve's
        # wrapper; granian's own does not, and a list is all many servers see).
        self.server_closes_lists = False
        chain = handler_chain(handler)
        self.enabled = chain is not None
        if chain is None:
            return
        self.tenants: TenantMiddleware = chain[0]
        self.security: SecurityMiddleware = chain[3]
        self.api: ApiFastPathMiddleware = chain[5]
        self.permissions_policy = _stored("Permissions-Policy", chain[4].value) if chain[4].value else None
        self.hsts, self.security_defaults = _security_headers(self.security)
        self.hosts = _Hosts()
        self.started = _Receivers(signals.request_started, (reset_queries, close_old_connections), _started)
        self.finished = _Receivers(signals.request_finished, (close_old_connections, close_caches, reset_urlconf),
                                   _finished, any_order=True)

    def takes(self, environ: dict[str, Any]) -> bool:
        """Whether this request goes through the lane (else through Django's handler)."""
        return self.enabled and environ.get("PATH_INFO", "").startswith(PREFIX) and not tracing_on()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.takes(environ):
            return self.handler(environ, start_response)
        response, _request = self.handle(environ)
        # response.items() as a list: the header store's (name, value) pairs (ResponseHeaders keeps them under
        # the lower-cased name), copied at once instead of through the Mapping's generator and a lookup per name.
        headers = list(response.headers._store.values())
        if response.cookies:
            headers += [("Set-Cookie", c.output(header="")) for c in response.cookies.values()]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        if response.streaming or getattr(response, "file_to_stream", None) is not None:
            # The server iterates it, then closes it: the stream's own close (a streamed call's record is written
            # in its generator's finally), then request_finished's receivers as below.
            response.close = functools.partial(self.close, response)
            return response
        # A complete body: handed over in one piece (granian writes a list at once). The response is closed (the
        # request's closers, request_finished's receivers) by the server once the bytes are handed over, off the
        # answer's path, when it closes lists (config.serve's wrapper); else by the lane now.
        if self.server_closes_lists:
            return _Body(response.content, functools.partial(self.close, response))
        body = [response.content]
        self.close(response)
        return body

    def handle(self, environ: dict[str, Any]) -> tuple[Any, WSGIRequest]:
        """The response (not yet closed) and its request, as WSGIHandler.__call__ and BaseHandler.get_response
        make them."""
        prefix = get_script_name(environ)
        # set_script_prefix, unless this thread's prefix is already that one (what it stores: "/"-terminated)
        if thread_locals.get(_PREFIXES, "value") != (prefix if prefix.endswith("/") else prefix + "/"):
            set_script_prefix(prefix)
        self.started.run(self.sender, environ=environ)
        request = WSGIRequest(environ)
        # Django's get_response sets ROOT_URLCONF here, which reads as none does everywhere (get_resolver(None),
        # hence reverse, resolve and the error handlers, reads ROOT_URLCONF then) and which ApiFastPathMiddleware
        # deletes again before the view: the lane leaves this thread without one instead (a value an earlier
        # request left is removed), a set and a delete through asgiref's Local (~2.5 us) less.
        if thread_locals.has(_URLCONFS, "value"):
            set_urlconf(None)
        response = self.respond(request, environ)
        response._handler_class = self.sender  # request_finished's sender, as Django sets it
        response._resource_closers.append(request.close)
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response, request

    def close(self, response: Any) -> None:
        """HttpResponseBase.close, with request_finished's receivers called directly when they are Django's."""
        if self.finished.current() is None:
            type(response).close(response)  # the class's: `close` may be this method, set on the response above
            return
        for closer in response._resource_closers:
            with contextlib.suppress(Exception):  # as HttpResponseBase.close: a closer's failure is not the client's
                closer()
        response._resource_closers.clear()
        response.closed = True
        self.finished.run(self.sender)

    def respond(self, request: HttpRequest, environ: dict[str, Any]) -> Any:
        """Layer by layer as the middleware chain: TenantMiddleware's answers (suspended, unknown or refused host)
        carry no other header; the body limit's 413 carries the request id only; the rest carry all."""
        try:
            hostname = self.hosts.hostname(self.tenants, request, environ)
            refused = self.tenants.for_hostname(request, hostname)
        except Exception as exc:  # as convert_exception_to_response around TenantMiddleware
            refused = response_for_exception(request, exc)
        if refused is not None:
            return refused
        token, request_id = request_id_enter(request)
        try:
            response = self.below_request_id(request)
        finally:
            request_id_exit(token)
        response.headers._store["request-id"] = ("request-id", request_id)  # a valid id: [A-Za-z0-9._-]
        return response

    def below_request_id(self, request: HttpRequest) -> Any:
        too_large = body_refusal(request)
        if too_large is not None:
            return too_large
        try:
            redirect = self.security.process_request(request)  # SECURE_SSL_REDIRECT
        except Exception as exc:  # as convert_exception_to_response around SecurityMiddleware
            return response_for_exception(request, exc)
        if redirect is None:
            response = self.view(request)
            # PermissionsPolicyMiddleware; `headers` is what `name in response` reads (lower-cased name -> item)
            headers = response.headers._store
            if self.permissions_policy is not None and "permissions-policy" not in headers:
                headers["permissions-policy"] = self.permissions_policy
        else:
            response = redirect
            headers = response.headers._store
        # SecurityMiddleware.process_response: HSTS over https unless set, then each default unless set
        if self.hsts is not None and "strict-transport-security" not in headers and request.is_secure():
            headers["strict-transport-security"] = self.hsts
        for name, item in self.security_defaults:
            if name not in headers:
                headers[name] = item
        return response

    def view(self, request: HttpRequest) -> Any:
        try:
            return self.api(request)  # type: ignore[no-any-return]
        except Exception as exc:  # as convert_exception_to_response around ApiFastPathMiddleware
            return response_for_exception(request, exc)

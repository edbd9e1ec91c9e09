"""The API lane (config/api_lane.py) against Django's handler and middleware chain, request by request: the same
status, the same headers (security headers, Permissions-Policy, request-id), the same body, from the right side and
from the wrong one (unknown, suspended, public or refused host, oversized body, bad request id, no key, a view
that raises); the signals' receivers and the DB connection hygiene; when the lane steps aside."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client
from django.test.client import ClientHandler

from config.api_lane import ApiLane
from tests.chat.conftest import body
from tests.conftest import tenant_host
from tests.lane import LaneClientHandler

pytestmark = pytest.mark.django_db

_REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


@pytest.fixture
def production_headers(settings: Any) -> None:
    """HSTS behind a TLS proxy, as production configures it (the test settings leave HSTS off)."""
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.fixture
def pair(production_headers: None) -> Callable[[str], tuple[Client, Client]]:
    """Two test clients for a host: Django's handler, and the lane (which must answer the same)."""

    def _pair(host: str) -> tuple[Client, Client]:
        django = Client(HTTP_HOST=host, raise_request_exception=False)
        lane = Client(HTTP_HOST=host, raise_request_exception=False)
        django.handler = ClientHandler(enforce_csrf_checks=False)
        lane.handler = LaneClientHandler(enforce_csrf_checks=False)
        return django, lane

    return _pair


@pytest.fixture
def key(tenant_a: Any, make_user: Any, api_key_for: Any) -> str:
    return api_key_for(tenant_a, make_user(tenant_a, "basic_user"))  # type: ignore[no-any-return]


def _headers(response: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in response.items()}


def _same(django: Any, lane: Any, *, same_body: bool = True) -> dict[str, str]:
    """Asserts both answers are the same but for the generated request id; returns the lane's headers."""
    assert lane.wsgi_request.path == django.wsgi_request.path
    assert getattr(lane, "through_lane", False) and not hasattr(django, "through_lane")
    assert lane.status_code == django.status_code, (lane.content, django.content)
    lane_headers, django_headers = _headers(lane), _headers(django)
    lane_id, django_id = lane_headers.pop("request-id", None), django_headers.pop("request-id", None)
    assert lane_headers == django_headers
    assert (lane_id is None) == (django_id is None)
    if same_body:
        lane_body, django_body = b"".join(lane), b"".join(django)
        if lane_id and django_id:
            lane_body = lane_body.replace(lane_id.encode(), b"<id>")
            django_body = django_body.replace(django_id.encode(), b"<id>")
        assert lane_body == django_body
    return _headers(lane)


def _both(pair_: tuple[Client, Client], method: str, path: str, **kwargs: Any) -> tuple[Any, Any]:
    django, lane = pair_
    return getattr(django, method)(path, **kwargs), getattr(lane, method)(path, **kwargs)


_SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "same-origin",
             "cross-origin-opener-policy": "same-origin",
             "strict-transport-security": "max-age=3600; includeSubDomains"}


def _secured(headers: dict[str, str]) -> None:
    for name, value in _SECURITY.items():
        assert headers[name] == value, name
    assert "camera=()" in headers["permissions-policy"]


def test_the_served_application_is_the_lane_and_it_is_on() -> None:
    import config.wsgi

    assert isinstance(config.wsgi.application, ApiLane) and config.wsgi.application.enabled
    assert isinstance(Client().handler, LaneClientHandler)  # the test client walks it too (tests/conftest.py)


def test_a_call_and_a_streamed_call_answer_alike(sim: Any, pair: Any, key: str, tenant_a: Any) -> None:
    clients = pair(tenant_host(tenant_a))
    payload = json.dumps(body("Hello"))
    for stream in (False, True):
        data = json.dumps(body("Hello", stream=True)) if stream else payload
        django, lane = _both(clients, "post", "/v1/messages", data=data, content_type="application/json",
                             HTTP_X_API_KEY=key, HTTP_X_FORWARDED_PROTO="https")
        headers = _same(django, lane, same_body=False)
        assert lane.status_code == 200 and lane.streaming is stream
        assert _REQUEST_ID.fullmatch(headers["request-id"])
        _secured(headers)
        text = b"".join(lane.streaming_content if stream else [lane.content])
        assert (b"message_stop" in text) if stream else json.loads(text)["type"] == "message"
    django, lane = _both(clients, "get", "/v1/models", HTTP_X_API_KEY=key, HTTP_X_FORWARDED_PROTO="https")
    _same(django, lane)
    assert lane.status_code == 200


def test_no_key_and_a_bad_request_id(sim: Any, pair: Any, tenant_a: Any) -> None:
    clients = pair(tenant_host(tenant_a))
    django, lane = _both(clients, "post", "/v1/messages", data="{}", content_type="application/json",
                         HTTP_X_REQUEST_ID="not valid!\u00e9", HTTP_X_FORWARDED_PROTO="https")
    headers = _same(django, lane)
    assert lane.status_code == 401 and json.loads(lane.content)["error"]["type"] == "authentication_error"
    assert _REQUEST_ID.fullmatch(headers["request-id"])  # the invalid id is replaced, never echoed
    _secured(headers)
    django, lane = _both(clients, "post", "/v1/messages", data="{}", content_type="application/json",
                         HTTP_X_REQUEST_ID="client-id.42_x")
    assert _same(django, lane)["request-id"] == "client-id.42_x"
    assert "strict-transport-security" not in _headers(lane)  # plain http: no HSTS


def test_an_oversized_body_is_the_apis_413_with_the_request_id_only(sim: Any, pair: Any, key: str, tenant_a: Any,
                                                                    settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    django, lane = _both(pair(tenant_host(tenant_a)), "post", "/v1/messages", data=json.dumps(body("x" * 5000)),
                         content_type="application/json", HTTP_X_API_KEY=key, HTTP_X_FORWARDED_PROTO="https")
    headers = _same(django, lane)
    assert lane.status_code == 413 and json.loads(lane.content)["error"]["type"] == "request_too_large"
    assert "request-id" in headers and "x-content-type-options" not in headers  # as BodyLimitMiddleware's place
    assert not sim.requests()


def test_a_view_that_raises_is_the_apis_500_without_a_traceback(sim: Any, pair: Any, tenant_a: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import inference.api_v1

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret-detail of a bug")

    monkeypatch.setattr(inference.api_v1, "api_error", boom)  # GET /v1/messages answers through it
    django, lane = _both(pair(tenant_host(tenant_a)), "get", "/v1/messages", HTTP_X_FORWARDED_PROTO="https")
    headers = _same(django, lane)
    assert lane.status_code == 500
    error = json.loads(lane.content)
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert headers["request-id"] in error["error"]["message"]
    assert b"secret-detail" not in lane.content and b"Traceback" not in lane.content
    _secured(headers)


@pytest.mark.parametrize("host", ["nobody.localhost", "localhost", "evil.example.com"])
def test_unknown_public_and_refused_hosts_answer_as_django(sim: Any, pair: Any, host: str) -> None:
    """No tenant for the host (404), the public site which has no /v1/ (Django's full chain: its 404), a host
    outside ALLOWED_HOSTS: the same answer, the same (few) headers."""
    django, lane = _both(pair(host), "post", "/v1/messages", data="{}", content_type="application/json",
                         HTTP_X_FORWARDED_PROTO="https")
    _same(django, lane)
    assert lane.status_code in (400, 404)


def test_a_suspended_tenant_is_refused_before_anything_runs(sim: Any, pair: Any, key: str, tenant_a: Any,
                                                            tenant_update: Any) -> None:
    tenant_update(tenant_a, is_active=False)
    django, lane = _both(pair(tenant_host(tenant_a)), "post", "/v1/messages", data=json.dumps(body()),
                         content_type="application/json", HTTP_X_API_KEY=key, HTTP_X_FORWARDED_PROTO="https")
    headers = _same(django, lane)
    assert lane.status_code == 403 and "suspended" in json.loads(lane.content)["error"]["message"]
    assert "request-id" not in headers  # answered by the tenant middleware, above the request id
    assert not sim.requests()


# --- the WSGI application itself -----------------------------------------------------------------------------

def _environ(host: str, path: str = "/v1/messages", data: bytes = b"{}", **extra: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": host, "SERVER_PORT": "80", "HTTP_HOST": host,
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data),
            "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "QUERY_STRING": "",
            "SCRIPT_NAME": "", "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "wsgi.version": (1, 0), **extra}


def _wsgi(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.update(status=status, headers=headers)

    result = app(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return started["status"], started["headers"], content


@pytest.fixture
def no_connection_closing() -> Iterator[None]:
    """Inside the test's transaction the connection must stay open (what Django's test client does too). The
    receivers come back in their order: the lane runs Django's own ones as one function only in that order."""
    saved = [(signal, list(signal.receivers)) for signal in (request_started, request_finished)]
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal, receivers in saved:
            with signal.lock:
                signal.receivers = receivers
                signal.sender_receivers_cache.clear()


def test_the_wsgi_answer_is_djangos(sim: Any, tenant_a: Any, production_headers: None,
                                    no_connection_closing: None) -> None:
    handler = WSGIHandler()
    lane = ApiLane(handler)
    for environ in (lambda: _environ(tenant_host(tenant_a), HTTP_X_FORWARDED_PROTO="https"),
                    lambda: _environ("nobody.localhost"), lambda: _environ("localhost")):
        django_status, django_headers, django_body = _wsgi(handler, environ())
        status, headers, content = _wsgi(lane, environ())
        assert status == django_status
        strip = {"request-id"}
        assert ({(k, v) for k, v in headers if k not in strip} == {(k, v) for k, v in django_headers if k not in strip})
        assert content == django_body


def test_the_signals_receivers_run_around_each_call(sim: Any, tenant_a: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """close_old_connections before and after the call (CONN_MAX_AGE, health checks), reset_queries, close_caches,
    reset_urlconf; and any other receiver gets the signal itself."""
    calls: list[str] = []
    monkeypatch.setattr(BaseDatabaseWrapper, "close_if_unusable_or_obsolete", lambda self: calls.append("hygiene"))
    monkeypatch.setattr(BaseDatabaseWrapper, "queries_log", property(lambda self: _Log(calls)), raising=False)
    lane = ApiLane(WSGIHandler())
    status, _headers, _body = _wsgi(lane, _environ(tenant_host(tenant_a)))
    assert status.startswith("401")
    assert calls == ["reset_queries", "hygiene", "hygiene"]

    seen: list[tuple[str, Any]] = []

    def started(sender: Any, **kwargs: Any) -> None:
        seen.append(("started", sender))

    def finished(sender: Any, **kwargs: Any) -> None:
        seen.append(("finished", sender))

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        calls.clear()
        _wsgi(lane, _environ(tenant_host(tenant_a)))
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert seen == [("started", WSGIHandler), ("finished", WSGIHandler)]
    assert calls == ["reset_queries", "hygiene", "hygiene"]


class _Log:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def clear(self) -> None:
        self.calls.append("reset_queries")


def test_the_lane_steps_aside(tenant_a: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another middleware above the API's (the tracing instrumentation's, any other), tracing on, or a path outside
    /v1/: Django's handler answers."""
    settings.MIDDLEWARE = ["django.middleware.common.CommonMiddleware", *settings.MIDDLEWARE]
    assert not ApiLane(WSGIHandler()).enabled
    settings.MIDDLEWARE = settings.MIDDLEWARE[1:]
    lane = ApiLane(WSGIHandler())
    assert lane.enabled
    v1 = _environ(tenant_host(tenant_a))
    assert lane.takes(v1) and not lane.takes(_environ(tenant_host(tenant_a), path="/api/v1/x"))
    monkeypatch.setattr("config.api_lane.tracing_on", lambda: True)
    assert not lane.takes(v1)


def test_the_https_redirect_answers_as_django(sim: Any, pair: Any, tenant_a: Any, settings: Any) -> None:
    """SECURE_SSL_REDIRECT: SecurityMiddleware's redirect, with its headers and the request id, no
    Permissions-Policy (which sits below it); over https the call goes on."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REFERRER_POLICY = ["same-origin", " strict-origin"]
    clients = pair(tenant_host(tenant_a))
    django, lane = _both(clients, "post", "/v1/messages", data="{}", content_type="application/json")
    headers = _same(django, lane)
    assert lane.status_code == 301 and headers["location"].startswith("https://")
    assert "permissions-policy" not in headers and "request-id" in headers
    django, lane = _both(clients, "post", "/v1/messages", data="{}", content_type="application/json",
                         HTTP_X_FORWARDED_PROTO="https")
    assert _same(django, lane)["referrer-policy"] == "same-origin, strict-origin"
    assert lane.status_code == 401


def test_a_stream_the_client_leaves_is_closed_by_the_server_with_the_receivers(
        sim: Any, tenant_a: Any, make_user: Any, api_key_for: Any, in_tenant: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane hands a stream to the server, which closes it when the client goes away: the stream's generator
    ends (what was produced is recorded, incomplete), then request_finished's receivers run (connection hygiene)."""
    from audit.models import AuditEntry

    user = make_user(tenant_a, "basic_user")
    key = api_key_for(tenant_a, user)
    calls: list[str] = []
    monkeypatch.setattr(BaseDatabaseWrapper, "close_if_unusable_or_obsolete", lambda self: calls.append("hygiene"))
    lane = ApiLane(WSGIHandler())
    data = json.dumps(body("Stop me", stream=True)).encode()
    result: Any = lane(_environ(tenant_host(tenant_a), data=data, HTTP_X_API_KEY=key), lambda *args: None)
    assert b"message_start" in next(iter(result))
    assert calls == ["hygiene"]  # request_started's
    result.close()  # what granian and gunicorn do when the client has gone away
    assert calls == ["hygiene", "hygiene"]
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).get()
        assert entry.status == "incomplete" and "went away" in entry.error


def test_cookies_and_the_request_finished_receivers_as_django(sim: Any, tenant_a: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A response's cookies reach the server as Django's Set-Cookie headers (after the header store's pairs); at
    the close, request_finished's receivers (run as one function when they are Django's own) close the caches and
    reset the URLconf."""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache
    from django.http import HttpResponse
    from django.urls import get_urlconf

    import inference.api_v1

    def with_cookies(*args: Any, **kwargs: Any) -> Any:
        response = HttpResponse(b"{}", content_type="application/json", status=405)
        response.set_cookie("a", "1", httponly=True)
        response.set_cookie("b", "2", max_age=60)
        return response

    monkeypatch.setattr(inference.api_v1, "api_error", with_cookies)  # GET /v1/messages answers through it
    closed: list[str] = []
    monkeypatch.setattr(LocMemCache, "close", lambda self, **kwargs: closed.append("cache"))
    monkeypatch.setattr(BaseDatabaseWrapper, "close_if_unusable_or_obsolete", lambda self: closed.append("hygiene"))
    handler = WSGIHandler()
    lane = ApiLane(handler)
    lane.finished.current()
    assert lane.finished.fusable  # the one function for Django's own receivers (any order) is what runs
    environ = lambda: _environ(tenant_host(tenant_a), REQUEST_METHOD="GET")  # noqa: E731
    django_status, django_headers, _ = _wsgi(handler, environ())
    caches["default"]  # initialized in this thread: its close is due at each request's end
    closed.clear()
    status, headers, _ = _wsgi(lane, environ())
    assert status == django_status == "405 Method Not Allowed"
    cookies = [value for name, value in headers if name == "Set-Cookie"]
    assert len(cookies) == 2 and cookies == [value for name, value in django_headers if name == "Set-Cookie"]
    assert headers[-2:] == [("Set-Cookie", cookie) for cookie in cookies]
    assert closed == ["hygiene", "hygiene", "cache"] and get_urlconf() is None


def test_the_end_of_request_work_runs_once_the_answer_is_handed_to_our_server(sim: Any, tenant_a: Any,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Under config.serve's wrapper (which closes a list once granian has its bytes) a complete answer's
    request_finished work runs after the answer is handed over, off its path; under any other server the lane
    closes the response before handing the body back, as before."""
    from config import serve

    order: list[Any] = []
    monkeypatch.setattr(BaseDatabaseWrapper, "close_if_unusable_or_obsolete", lambda self: order.append("hygiene"))

    class Proto:
        def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            order.append(("handed over", status, json.loads(body)["error"]["type"]))

    lane = ApiLane(WSGIHandler())
    lane.server_closes_lists = True
    serve.wsgi_callback_wrapper(lane, {}, None)(Proto(), _environ(tenant_host(tenant_a), REQUEST_METHOD="GET"))
    assert order == ["hygiene", ("handed over", 405, "invalid_request_error"), "hygiene"]

    order.clear()
    lane.server_closes_lists = False
    result = lane(_environ(tenant_host(tenant_a), REQUEST_METHOD="GET"), lambda *args: None)
    assert type(result) is list and order == ["hygiene", "hygiene"]

"""The web server's launcher (config/serve.py): its settings, read from the environment with one clear line for a
malformed value, and the request limits it puts in front of Django. The server itself is what every real-server
test runs (tests/conftest.py's WebServer); draining at SIGTERM is walked by tests/chat/test_faults.py."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from config import serve
from tests.conftest import ROOT, subprocess_env


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served"]


def _call(app: Any, path: str = "/", query: str = "", **headers: str) -> tuple[str, bytes]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query}
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h: status.append(s)))
    return status[0], body


def test_limits_refuse_before_the_application_and_serve_just_under_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATRIUM_WEB_LIMIT_REQUEST_LINE", "100")
    monkeypatch.setenv("ATRIUM_WEB_LIMIT_REQUEST_FIELDS", "5")
    monkeypatch.setenv("ATRIUM_WEB_LIMIT_REQUEST_FIELD_SIZE", "50")
    app = serve.limits(_app)
    assert _call(app, "/", "q=" + "a" * 70) == ("200 OK", b"served")
    assert _call(app, "/", "q=" + "a" * 100)[0].startswith("414")
    assert _call(app, X_A="v" * 30) == ("200 OK", b"served")
    status, body = _call(app, X_A="v" * 60)
    assert status.startswith("431") and b"too large" in body
    assert _call(app, **{f"X_{i}": "v" for i in range(5)})[0] == "200 OK"
    assert _call(app, **{f"X_{i}": "v" for i in range(6)})[0].startswith("431")


def test_settings_fall_back_to_the_gunicorn_names_of_earlier_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATRIUM_WEB_THREADS", raising=False)
    monkeypatch.setenv("GUNICORN_THREADS", "7")
    assert serve._int_env("ATRIUM_WEB_THREADS", 16) == 7
    monkeypatch.setenv("ATRIUM_WEB_THREADS", "9")
    assert serve._int_env("ATRIUM_WEB_THREADS", 16) == 9
    assert serve._parse_bind("[::1]:8001") == ("::1", 8001)
    assert serve._parse_bind(":8002") == ("0.0.0.0", 8002)


def test_the_runtime_threads_setting_reaches_granian_and_nothing_else_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    import granian.server

    seen: list[dict[str, Any]] = []

    class _Server:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(kwargs)

        def serve(self) -> None:
            pass

    monkeypatch.setattr(granian.server, "Server", _Server)
    monkeypatch.setenv(serve.SERVER_ENV, "granian")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("ATRIUM_WEB_RUNTIME_THREADS", raising=False)
    argv = ["--bind", "127.0.0.1:8000", "--workers", "2", "--threads", "16"]
    assert serve.main(argv) == 0
    monkeypatch.setenv("ATRIUM_WEB_RUNTIME_THREADS", "2")
    assert serve.main(argv) == 0
    assert [kwargs["runtime_threads"] for kwargs in seen] == [1, 2]
    assert all((kwargs["workers"], kwargs["blocking_threads"]) == (2, 16) for kwargs in seen)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("ATRIUM_WEB_RUNTIME_THREADS", "two", "ATRIUM_WEB_RUNTIME_THREADS is not a valid int value; fix it or unset it."),
    ("ATRIUM_WEB_RUNTIME_THREADS", "0", "--workers, --threads and ATRIUM_WEB_RUNTIME_THREADS must be at least 1"),
    ("ATRIUM_WEB_WORKERS", "two", "ATRIUM_WEB_WORKERS is not a valid int value; fix it or unset it."),
    ("ATRIUM_WEB_ACCESS_LOG", "maybe", "ATRIUM_WEB_ACCESS_LOG is not a valid bool value; fix it or unset it."),
    ("GUNICORN_THREADS", "many", "GUNICORN_THREADS is not a valid int value; fix it or unset it."),
    ("ATRIUM_WEB_BIND", "localhost", "the bind address must be host:port, not 'localhost'"),
])
def test_a_malformed_setting_stops_the_server_with_one_line(variable: str, value: str, message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "config.serve"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env=subprocess_env(**{variable: value}))
    assert result.returncode != 0
    assert result.stderr.strip() == f"atrium: {message}"


# --- granian's per-request wrapper, ours (config.serve.wsgi_callback_wrapper) ----------------------------------

class _Proto:
    """granian's protocol object, as the wrapper uses it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.sent.append((status, headers, body))

    def response_iter(self, status: int, headers: list[tuple[str, str]], body: Any) -> None:
        chunks = []
        try:
            while True:
                chunks.append(body.__next__())
        except StopIteration:
            pass
        body.close()
        self.sent.append((status, headers, b"".join(chunks)))


def _scope(path: str = "/v1/messages", query: str = "", **headers: str) -> dict[str, Any]:
    scope: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": query,
                             "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.7", "SERVER_NAME": "a.localhost",
                             "SERVER_PORT": "8000", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b"")}
    scope.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return scope


@pytest.fixture
def access_log() -> Iterator[io.StringIO]:
    """granian.access as granian configures it (one stream handler, '%(message)s'), into a buffer."""
    import logging

    logger = logging.getLogger("granian.access")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


def _through(wrapper: Any, scope: dict[str, Any], app: Any) -> tuple[Any, list[dict[str, Any]]]:
    environs: list[dict[str, Any]] = []

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        environs.append(environ)
        return app(environ, start_response)

    import logging

    from config.access_log import flush_all

    # granian.access with the fixture's stream handler alone: pytest's log capture adds handlers of its own once a
    # test runs, which would send our wrapper's lines through logging instead of its direct (buffered) path.
    logger = logging.getLogger("granian.access")
    logger.handlers[:] = [handler for handler in logger.handlers if type(handler) is logging.StreamHandler]
    proto = _Proto()
    status = wrapper(recording, {"url_path_prefix": None}, serve.ACCESS_LOG_FORMAT)(proto, scope)
    flush_all()  # our wrapper's lines are buffered (config.access_log): written out as at a worker's exit
    assert status == proto.sent[0][0]
    return proto.sent, environs


def _streamed(environ: dict[str, Any], start_response: Any) -> Any:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    start_response("201 Created", [("Content-Type", "text/event-stream")])
    return chunks()


@pytest.mark.parametrize("app", [_app, _streamed])
def test_our_wrapper_answers_and_logs_as_granians(app: Any, access_log: io.StringIO) -> None:
    """The same environ, the same answer, the same access log line (path and status only) as granian's own."""
    from granian.wsgi import _callback_wrapper

    scope = _scope(X_REQUEST_ID="r1")
    theirs = _through(_callback_wrapper, scope, app)
    their_log = access_log.getvalue()
    access_log.seek(0)
    access_log.truncate()
    ours = _through(serve.wsgi_callback_wrapper, scope, app)
    assert ours == theirs
    timing = re.compile(r" [0-9.]+ms$", re.M)
    assert timing.sub(" Tms", access_log.getvalue()) == timing.sub(" Tms", their_log)
    assert access_log.getvalue().startswith('10.0.0.7 "POST /v1/messages HTTP/1.1" 20')


def test_our_wrapper_logs_through_logging_when_the_logger_is_configured_otherwise(access_log: io.StringIO) -> None:
    import logging

    seen: list[str] = []
    logger = logging.getLogger("granian.access")
    logger.addFilter(lambda record: seen.append(record.getMessage()) or True)  # type: ignore[func-returns-value]
    try:
        _through(serve.wsgi_callback_wrapper, _scope(), _app)
    finally:
        logger.filters.clear()
    assert seen and seen[0].startswith('10.0.0.7 "POST /v1/messages HTTP/1.1" 200')
    assert access_log.getvalue().startswith('10.0.0.7 "POST /v1/messages HTTP/1.1" 200')


def test_our_wrapper_refuses_over_the_limits_on_the_request_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limits count the request's header fields, not the process environment's HTTP_* variables."""
    monkeypatch.setenv("ATRIUM_WEB_LIMIT_REQUEST_LINE", "100")
    monkeypatch.setenv("ATRIUM_WEB_LIMIT_REQUEST_FIELDS", "5")
    monkeypatch.setenv("ATRIUM_WEB_LIMIT_REQUEST_FIELD_SIZE", "50")
    for i in range(10):
        monkeypatch.setenv(f"HTTP_FROM_ENVIRONMENT_{i}", "x")
    wrapper = serve.wsgi_callback_wrapper

    def status(scope: dict[str, Any]) -> int:
        proto = _Proto()
        wrapper(_app, {}, None)(proto, scope)
        return int(proto.sent[0][0])

    assert status(_scope("/", "q=" + "a" * 70)) == 200
    assert status(_scope("/", "q=" + "a" * 100)) == 414
    assert status(_scope(X_A="v" * 30)) == 200
    assert status(_scope(X_A="v" * 60)) == 431
    assert status(_scope(**{f"X_{i}": "v" for i in range(5)})) == 200
    assert status(_scope(**{f"X_{i}": "v" for i in range(6)})) == 431


def test_our_wrapper_stands_in_for_granians_of_the_pinned_version_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Written against granian's wrapper of one version: an upgrade of granian must come with a new look at it (and
    this test's version); another version keeps granian's wrapper and config.wsgi puts `limits` in front."""
    import granian
    from granian.server import mp

    assert f'"granian=={serve.GRANIAN_VERSION}"' in (ROOT / "pyproject.toml").read_text()
    assert granian.__version__ == serve.GRANIAN_VERSION
    monkeypatch.setattr(mp, "_wsgi_call_wrap", mp._wsgi_call_wrap)
    assert serve.install_wsgi_wrapper() and mp._wsgi_call_wrap is serve.wsgi_callback_wrapper
    monkeypatch.setattr(mp, "_wsgi_call_wrap", "granian's")
    monkeypatch.setattr(granian, "__version__", "9.9.9")
    assert not serve.install_wsgi_wrapper() and mp._wsgi_call_wrap == "granian's"


@pytest.mark.parametrize("boot", ["granian", "gunicorn"])
def test_a_workers_boot_collects_then_freezes_its_heap(boot: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The end of a worker's boot (serve.worker_init, gunicorn's post_worker_init): garbage of the boot is
    collected, and what is alive is frozen (gc.freeze), out of reach of later full collections."""
    import gc
    import weakref
    from multiprocessing import util

    monkeypatch.setattr("inference.records.recorder_start", lambda: None)
    monkeypatch.setattr("inference.warm.warm_start", lambda: None)
    monkeypatch.setattr(util, "Finalize", lambda *args, **kwargs: None)

    class Node:
        other: Any = None

    garbage, kept = Node(), Node()
    garbage.other = garbage  # a cycle nothing refers to: only the collector frees it
    dead = weakref.ref(garbage)
    del garbage
    before = gc.get_freeze_count()
    try:
        if boot == "granian":
            serve.worker_init()
        else:
            from config import gunicorn

            gunicorn.post_worker_init(None)
        assert dead() is None, "the boot's garbage was frozen instead of collected"
        assert gc.get_freeze_count() > before and kept is not None
    finally:
        gc.unfreeze()
        while serve._freeze_after_warm_up in gc.callbacks:
            gc.callbacks.remove(serve._freeze_after_warm_up)


def test_the_first_full_collection_after_boot_freezes_its_survivors_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the boot's freeze, the first full collection (the worker warmed up by its traffic) collects its
    garbage and freezes what survived; later full collections collect and freeze nothing more."""
    import gc
    import weakref

    class Node:
        other: Any = None

    serve.heap_freeze()
    serve.heap_freeze()  # a second boot hook (gunicorn and granian share it) registers nothing more
    monkeypatch.setattr(serve, "_warm_up", {"frozen": False})  # a worker that has not warmed up yet
    try:
        assert gc.callbacks.count(serve._freeze_after_warm_up) == 1
        gc.collect(1)  # a young collection freezes nothing
        assert not serve._warm_up["frozen"]
        warm, garbage = Node(), Node()  # what the first requests built, and their cyclic garbage
        garbage.other = garbage
        dead = weakref.ref(garbage)
        del garbage
        # Frozen or not is read off each object (gc.get_objects() lists what the collector still scans), not off
        # gc.get_freeze_count(): frozen objects that other code frees meanwhile take the count down.
        assert any(warm is each for each in gc.get_objects())
        gc.collect()
        assert dead() is None, "the garbage was frozen instead of collected"
        assert serve._warm_up["frozen"]
        assert not any(warm is each for each in gc.get_objects()), "what survived is still scanned: not frozen"
        later = Node()
        later.other = later
        gc.collect()
        assert any(later is each for each in gc.get_objects()), "a second freeze took what came after the first"
    finally:
        gc.unfreeze()
        while serve._freeze_after_warm_up in gc.callbacks:
            gc.callbacks.remove(serve._freeze_after_warm_up)


def test_our_wrapper_closes_a_list_once_its_bytes_are_handed_over() -> None:
    """As WSGI servers close any iterable they were handed (granian's own wrapper does not close lists): after
    response_bytes, and even when that fails; a plain list needs nothing."""
    order: list[str] = []

    class Closable(list):  # type: ignore[type-arg]
        def close(self) -> None:
            order.append("closed")

    class Proto(_Proto):
        fail = False

        def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            order.append("handed over")
            if self.fail:
                raise ConnectionError("the client went away")
            super().response_bytes(status, headers, body)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closable([b"a", b"b"])

    proto = Proto()
    assert serve.wsgi_callback_wrapper(app, {}, None)(proto, _scope()) == 200
    assert order == ["handed over", "closed"] and proto.sent[0][2] == b"ab"
    order.clear()
    proto.fail = True
    with pytest.raises(ConnectionError):
        serve.wsgi_callback_wrapper(app, {}, None)(proto, _scope())
    assert order == ["handed over", "closed"]
    assert serve.wsgi_callback_wrapper(_app, {}, None)(_Proto(), _scope()) == 200

"""The web server: `python -m config.serve` serves config.wsgi with granian's WSGI interface (make run, the Docker
image, Helm, compose and the tests all start it this way).

granian (a Rust HTTP server with a Python WSGI interface) was chosen over gunicorn's threaded workers by measurement
(docs/benchmarks.md, docs/decisions.md): the same Atrium code added less latency per call and served at least as
many requests per second at concurrency 32, because the HTTP work (parsing, keep-alive, writing the response) runs
outside the Python interpreter and a call needs no hand-off between a poller thread and a request thread.

What gunicorn's hooks did, done here and in `worker_init` (called by config/wsgi.py in each worker):
- the Prometheus multiprocess directory is emptied before the workers start, and a worker that exits marks its
  live gauges dead;
- each worker starts its record writer at boot (which replays what a killed worker journaled) and warms its
  provider clients;
- on SIGTERM granian stops accepting, lets each worker finish its requests, and the worker then writes its
  pending records (`BatchWriter.stop`, bounded by ATRIUM_RECORDER_STOP_WAIT_S) before it exits; a worker still
  busy after ATRIUM_WEB_GRACEFUL_TIMEOUT_S is killed, and what it journaled is replayed by the next process.
- request line and header limits (414, 431) are checked before Django (`limits`, below).

ATRIUM_WEB_SERVER=gunicorn runs gunicorn (config/gunicorn.py, whose hooks do the same) with the same options.

Settings (environment; each ATRIUM_WEB_X falls back to the GUNICORN_X of earlier releases): ATRIUM_WEB_BIND
(host:port, default 0.0.0.0:8000), ATRIUM_WEB_WORKERS (default: the number of CPUs, at least 2), ATRIUM_WEB_THREADS
(threads per worker, 16: each streamed answer holds one while it lasts), ATRIUM_WEB_THREADS_IDLE_TIMEOUT_S (30,
granian's 5-600: a request thread idle this long ends, and its database connections close with it,
config/thread_exit.py), ATRIUM_WEB_GRACEFUL_TIMEOUT_S (30), ATRIUM_WEB_ACCESS_LOG (true),
ATRIUM_WEB_ACCESS_LOG_FLUSH_S (0.25: the access log's lines are written in batches this often, config/access_log.py;
0: each at once), ATRIUM_WEB_LIMIT_REQUEST_LINE (8190), ATRIUM_WEB_LIMIT_REQUEST_FIELDS (100),
ATRIUM_WEB_LIMIT_REQUEST_FIELD_SIZE (16384), ATRIUM_WEB_RUNTIME_THREADS (1: granian's Rust I/O threads per worker; 2
answered c=1 calls 0.4-0.8 ms sooner on a 2-core host at load 10-20 but 0.04-0.06 ms later at load 3-8, and c=32 with
up to 10% fewer requests a second: docs/benchmarks.md "Process settings"). The command line's --bind, --workers,
--threads, --no-access-log override.
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from config.env import env

logger = logging.getLogger(__name__)

SERVER_ENV = "ATRIUM_WEB_SERVER"  # set for the workers: config/wsgi.py calls worker_init when it is "granian"

# Access log lines carry the path and status only, never bodies or headers (no keys, no prompts).
ACCESS_LOG_FORMAT = '%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms'


def _variable(name: str) -> str:
    """ATRIUM_WEB_X, or the GUNICORN_X of deployments made before granian (same meaning) when only that is set."""
    legacy = "GUNICORN_" + name.removeprefix("ATRIUM_WEB_")
    if not os.environ.get(name, "").strip() and os.environ.get(legacy, "").strip():
        return legacy
    return name


def _env(name: str) -> str:
    return os.environ.get(_variable(name), "")


def _int_env(name: str, default: int) -> int:
    """The setting as an int (config.env's reader: a malformed value stops the process with one line)."""
    variable = _variable(name)
    return int(env.int(variable, default=default)) if os.environ.get(variable, "").strip() else default


def _float_env(name: str, default: float) -> float:
    return float(env.float(name, default=default)) if os.environ.get(name, "").strip() else default


def _bool_env(name: str, default: bool) -> bool:
    variable = _variable(name)
    return bool(env.bool(variable, default=default)) if os.environ.get(variable, "").strip() else default


def _parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"atrium: the bind address must be host:port, not {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a container's server listens on every address


def prometheus_directory_reset() -> None:
    """Start from an empty Prometheus multiprocess directory, so /metrics sums the workers that exist."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


# --- in each worker ---------------------------------------------------------------------------------------

def _worker_exit() -> None:
    """At a worker's exit: write its pending records (or journal them), then drop its live Prometheus gauges."""
    from config.access_log import flush_all
    from inference.records import writer

    try:
        flush_all()  # the access log's last lines (config.access_log)
        writer.stop()
    finally:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def worker_init() -> None:
    """A worker's boot, once its application is loaded: the record writer (replaying dead workers' journals), the
    provider clients, and the exit work. granian's workers are multiprocessing children, which leave through
    os._exit: atexit handlers do not run there, multiprocessing's finalizers do."""
    from multiprocessing import util

    from config.tenant_cache import cache_listener_boot
    from inference.records import recorder_start
    from inference.warm import warm_start

    recorder_start()
    warm_start()
    cache_listener_boot()  # the per-process caches answer from the first request on (config/tenant_cache.py)
    util.Finalize(None, _worker_exit, exitpriority=100)
    heap_freeze()


def heap_freeze() -> None:
    """At the end of a worker's boot: collect once, then move everything alive (Django, the apps, their modules
    and caches: some 300,000 objects) out of the collector's reach (gc.freeze), so the full collections that
    requests' survivors trigger now and then scan only what came after. Measured (/tmp/admit/prof_gc.py, 6000
    calls in-process): a full collection took 160-190 ms of the request thread (a latency spike of that size),
    10 ms frozen; young collections are unchanged. Called by worker_init and gunicorn's post_worker_init."""
    gc.collect()
    gc.freeze()
    if _freeze_after_warm_up not in gc.callbacks:
        gc.callbacks.append(_freeze_after_warm_up)


_warm_up = {"frozen": False}


def _freeze_after_warm_up(phase: str, info: dict[str, Any]) -> None:
    """After the first full collection a worker's traffic brings about, freeze again what survived it: what the
    first requests built to last (each thread's DB connection, the caches' entries, the provider clients: some
    25,000 objects), which every later full collection otherwise scans again to free nothing. The trigger of
    those collections is the number of objects moved to the oldest generation (objects of the requests in flight
    at a young collection, freed by reference counting soon after), so they keep coming, every 10-30 s per worker
    at c=32; with this the pause is that of the few objects moved since (measured in docs/benchmarks.md, eighth
    session). Once only: what is frozen is never collected, so a frozen object that later becomes cyclic garbage
    stays, as at boot; one freeze bounds that to what was alive at that moment."""
    if phase != "stop" or info["generation"] != 2 or _warm_up["frozen"]:
        return
    _warm_up["frozen"] = True
    gc.freeze()


class limits:
    """Refuse an over-long request line (414) or too many or too large header fields (431) before Django parses
    anything, as gunicorn's limit_request_* did. The answer is a short plain-text body."""

    def __init__(self, app: Callable[..., Iterable[bytes]] | None) -> None:
        self.app = app
        self.line = _int_env("ATRIUM_WEB_LIMIT_REQUEST_LINE", 8190)
        self.fields = _int_env("ATRIUM_WEB_LIMIT_REQUEST_FIELDS", 100)
        self.field_size = _int_env("ATRIUM_WEB_LIMIT_REQUEST_FIELD_SIZE", 16384)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refusal = self.refusal(environ)
        if refusal is not None:
            return _refuse(start_response, *refusal)
        assert self.app is not None
        return self.app(environ, start_response)

    def refusal(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """(status, message) when the request is over a limit. `environ` may be granian's scope: the request's own
        keys, without the process environment (wsgi_callback_wrapper)."""
        uri = environ.get("RAW_URI") or environ.get("PATH_INFO", "") + (
            "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        if len(environ.get("REQUEST_METHOD", "")) + len(uri) + 10 > self.line:
            return "414 URI Too Long", "The request line is too long."
        count = 0
        for key, value in environ.items():
            if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                count += 1
                if len(key) + len(value) + 2 > self.field_size:
                    return "431 Request Header Fields Too Large", "A request header field is too large."
        if count > self.fields:
            return "431 Request Header Fields Too Large", "Too many request header fields."
        return None


def _refuse(start_response: Callable[..., Any], status: str, message: str) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
    return [body]


# --- granian's WSGI callback wrapper, in each worker ---------------------------------------------------------

GRANIAN_VERSION = "2.8.9"  # the version whose wsgi._callback_wrapper wsgi_callback_wrapper stands in for


def wsgi_callback_wrapper(callback: Callable[..., Any], scope_opts: dict[str, Any],
                          access_log_fmt: str | None = None) -> Callable[..., Any]:
    """granian.wsgi._callback_wrapper (granian 2.8.9), which a worker uses in its place (`install_wsgi_wrapper`):
    the same environ (the process environment, granian's keys, the request's scope), the same answer, the same
    access log line, and less work per request:

    - the request limits (414, 431: `limits`) are checked on the request's own keys, granian's scope, before the
      process environment is merged in, instead of a pass over every key of the merged environ;
    - a request thread's database connections are closed when granian ends the thread (config.thread_exit),
      instead of at the cyclic collector's next full collection;
    - a list the application returns is closed (when it has a `close`, as WSGI servers close any iterable) right
      after its bytes are handed to granian, which granian's own wrapper does not do: the /v1 lane's end-of-request
      work (request_finished) then runs while the answer is written (ApiLane.server_closes_lists);
    - the access log line, when granian.access has the handler granian configured (a stream, '%(message)s'), is
      written to that handler's stream under its lock: the same bytes, without a log record, a caller lookup and
      a date formatted for nothing; any other configuration of that logger gets its record through logging.
    """
    import time

    from granian.log import access_logger
    from granian.wsgi import Response, ResponseIterWrap

    basic_env: dict[str, Any] = dict(os.environ)
    basic_env.update({
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SCRIPT_NAME": scope_opts.get("url_path_prefix") or "",
        "SERVER_SOFTWARE": "Granian",
        "wsgi.errors": sys.stderr,
        "wsgi.input_terminated": True,
        "wsgi.multiprocess": False,
        "wsgi.multithread": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    })
    prefix = basic_env["SCRIPT_NAME"]
    check = limits(None)
    from config.thread_exit import close_at_thread_exit

    def _runner(proto: Any, scope: dict[str, Any]) -> int:
        close_at_thread_exit()  # granian ends idle threads: their database connections go with them
        resp = Response()
        refusal = check.refusal(scope)
        if refusal is not None:
            rv: Any = _refuse(resp, *refusal)
        else:
            environ = basic_env | scope
            if prefix:
                environ["PATH_INFO"] = scope["PATH_INFO"][len(prefix):] or "/"
            rv = callback(environ, resp)
        if isinstance(rv, list):
            try:
                proto.response_bytes(resp.status, resp.headers, b"".join(rv))
            finally:
                close = getattr(rv, "close", None)  # once the answer is on its way, as WSGI servers close iterables
                if close is not None:
                    close()
        else:
            proto.response_iter(resp.status, resp.headers, ResponseIterWrap(rv))
        return int(resp.status)

    if not access_log_fmt:
        return _runner
    log_line = _access_line(access_log_fmt, access_logger)

    def _logged(proto: Any, scope: dict[str, Any]) -> int:
        started = time.perf_counter()
        try:
            status = _runner(proto, scope)
        except BaseException:
            log_line(scope, 500, started)
            raise
        log_line(scope, status, started)
        return status

    return _logged


def _access_line(fmt: str, access_logger: logging.Logger) -> Callable[[dict[str, Any], int, float], None]:
    """What granian's access logger does with a request (granian.log.log_request_builder), for the formats without
    header fields; written straight to granian's own handler while it is the logger's only one."""
    import time

    from granian.log import log_request_builder

    if "%(header{" in fmt or "%(time)s" in fmt:
        builder = log_request_builder(fmt)

        def _through_granian(scope: dict[str, Any], status: int, started: float) -> None:
            request = {"addr_remote": scope["REMOTE_ADDR"], "protocol": scope["SERVER_PROTOCOL"],
                       "path": scope["PATH_INFO"], "qs": scope["QUERY_STRING"], "method": scope["REQUEST_METHOD"],
                       "scheme": scope["wsgi.url_scheme"],
                       "headers": lambda key: scope.get("HTTP_" + key.upper().replace("-", "_"))}
            builder(time.time() - (time.perf_counter() - started), started, request, status)

        return _through_granian
    from config.access_log import AccessBuffer

    handlers = list(access_logger.handlers)
    handler: Any = handlers[0] if len(handlers) == 1 else None
    formatter = getattr(handler, "formatter", None)
    direct = (isinstance(handler, logging.StreamHandler) and formatter is not None
              and getattr(formatter, "_fmt", None) == "%(message)s")
    interval = _float_env("ATRIUM_WEB_ACCESS_LOG_FLUSH_S", 0.25)
    buffer = AccessBuffer(handler, interval) if direct and interval > 0 else None

    def _line(scope: dict[str, Any], status: int, started: float) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        fields = {"addr": scope["REMOTE_ADDR"], "dt_ms": (time.perf_counter() - started) * 1000, "status": status,
                  "path": scope["PATH_INFO"], "query_string": scope["QUERY_STRING"], "method": scope["REQUEST_METHOD"],
                  "scheme": scope["wsgi.url_scheme"], "protocol": scope["SERVER_PROTOCOL"]}
        current = access_logger.handlers
        if (direct and len(current) == 1 and current[0] is handler and handler.formatter is formatter
                and not access_logger.filters and not handler.filters):
            try:
                line = fmt % fields
                stream_handler: Any = handler  # what StreamHandler.emit does with the formatted record
                if buffer is not None:  # written a moment later, with the lines around it (config.access_log)
                    buffer.add(line + stream_handler.terminator)
                    return
                with stream_handler.lock:
                    stream_handler.stream.write(line + stream_handler.terminator)
                    stream_handler.flush()
            except Exception:  # then as granian does it, through logging (which reports the failure)
                access_logger.info(fmt, fields)
            return
        if buffer is not None:  # the lines buffered so far first, to keep the order
            buffer.flush()
        access_logger.info(fmt, fields)

    return _line


def install_wsgi_wrapper() -> bool:
    """In a granian worker, before granian wraps the application: its WSGI workers use wsgi_callback_wrapper.
    Only for the granian version it was written against (pyproject pins it); else granian's own, and False."""
    import granian
    from granian.server import mp

    if granian.__version__ != GRANIAN_VERSION:
        return False
    mp._wsgi_call_wrap = wsgi_callback_wrapper  # type: ignore[attr-defined]
    try:
        from granian.server import mt
    except ImportError:  # pragma: no cover - the free-threaded server's module
        return True
    mt._wsgi_call_wrap = wsgi_callback_wrapper  # type: ignore[attr-defined]
    return True


# --- the server -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.serve", description="Serve Atrium (granian, WSGI).")
    parser.add_argument("--bind", default=_env("ATRIUM_WEB_BIND") or "0.0.0.0:8000")
    parser.add_argument("--workers", type=int, default=_int_env("ATRIUM_WEB_WORKERS",
                                                                max(2, multiprocessing.cpu_count())))
    parser.add_argument("--threads", type=int, default=_int_env("ATRIUM_WEB_THREADS", 16))
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        default=_bool_env("ATRIUM_WEB_ACCESS_LOG", True))
    args = parser.parse_args(argv)
    host, port = _parse_bind(args.bind)
    runtime_threads = _int_env("ATRIUM_WEB_RUNTIME_THREADS", 1)
    if args.workers < 1 or args.threads < 1 or runtime_threads < 1:
        raise SystemExit("atrium: --workers, --threads and ATRIUM_WEB_RUNTIME_THREADS must be at least 1")
    graceful = _int_env("ATRIUM_WEB_GRACEFUL_TIMEOUT_S", 30)
    idle = _int_env("ATRIUM_WEB_THREADS_IDLE_TIMEOUT_S", 30)
    if not 5 <= idle <= 600:  # granian's bounds
        raise SystemExit("atrium: ATRIUM_WEB_THREADS_IDLE_TIMEOUT_S must be between 5 and 600")
    if os.environ.get(SERVER_ENV, "granian") == "gunicorn":  # the alternative server: config/gunicorn.py
        command = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py", "--bind", args.bind,
                   "--workers", str(args.workers), "--threads", str(args.threads)]
        if not args.access_log:
            command += ["--access-logfile", "/dev/null"]
        os.execv(sys.executable, command)  # noqa: S606 - this interpreter, fixed arguments

    from granian.constants import Interfaces
    from granian.server import Server

    os.environ[SERVER_ENV] = "granian"
    prometheus_directory_reset()
    Server("config.wsgi:application", address=host, port=port, interface=Interfaces.WSGI, workers=args.workers,
           blocking_threads=args.threads, blocking_threads_idle_timeout=idle, runtime_threads=runtime_threads,
           respawn_failed_workers=True, workers_kill_timeout=max(1, graceful), log_access=args.access_log,
           log_access_format=ACCESS_LOG_FORMAT).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

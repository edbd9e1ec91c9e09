"""The web server's launcher (config/serve.py): its settings, read from the environment with one clear line for a
malformed value, and the request limits it puts in front of Django. The server itself is what every real-server
test runs (tests/conftest.py's WebServer); draining at SIGTERM is walked by tests/chat/test_faults.py."""

from __future__ import annotations

import subprocess
import sys
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


@pytest.mark.parametrize(("variable", "value", "message"), [
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

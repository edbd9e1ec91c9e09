"""Issue 14, "headers" and the request limits, on the real web server with the production settings (collectstatic'ed):
no Content-Security-Policy, HSTS 0 by default and /metrics open were the findings."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from config.env import label_key
from tests.conftest import ROOT, WebServer, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture(scope="module")
def production_web(tenants: dict[str, Any], django_db_blocker: Any) -> Iterator[WebServer]:
    static_root = tempfile.mkdtemp(prefix="atrium-static-")
    with django_db_blocker.unblock():
        env = subprocess_env(
            DJANGO_SETTINGS_MODULE="config.settings.production",
            DJANGO_SECRET_KEY="production-test-secret-" + "x" * 40,
            ATRIUM_ENCRYPTION_KEYS=",".join([label_key("test-key-0-"), label_key("test-key-1-")]),
            ATRIUM_PLATFORM_AUDIT_KEY="production-test-platform-audit-key",
            ATRIUM_AUDIT_CHECKPOINT_KEY="production-test-audit-checkpoint-key",
            ATRIUM_STATIC_ROOT=static_root,
            ATRIUM_METRICS_TOKEN="",
        )
    env.pop("DJANGO_HSTS_SECONDS", None)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True, timeout=300)
    server = WebServer(env, workers=1).start()
    try:
        yield server
    finally:
        server.stop()


def _get(server: WebServer, host: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=30,
                     headers={"Host": host, "X-Forwarded-Proto": "https", **headers})


def test_security_headers_on_pages(production_web: WebServer) -> None:
    page = _get(production_web, "alpha.localhost", "/accounts/login/")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for directive in ("default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp, csp
    assert re.search(r"script-src 'self'", csp)
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert "camera=()" in page.headers["Permissions-Policy"] and "geolocation=()" in page.headers["Permissions-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "secure" in page.headers["set-cookie"].lower()  # the CSRF cookie, over https
    # Every script and style of the page is a file of this origin: nothing inline the policy would have to allow.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) and "<style" not in page.text
    assert " style=" not in page.text


def test_swagger_ui_runs_under_the_policy(production_web: WebServer) -> None:
    docs = _get(production_web, "alpha.localhost", "/api/docs/")
    assert docs.status_code == 200
    nonce = re.search(r"'nonce-([^']+)'", docs.headers["Content-Security-Policy"])
    assert nonce, docs.headers["Content-Security-Policy"]
    inline = re.findall(r"<(script|style)(?![^>]*\bsrc=)([^>]*)>", docs.text)
    assert inline and all(f'nonce="{nonce.group(1)}"' in attrs for _tag, attrs in inline)


def test_metrics_are_not_open_by_default(production_web: WebServer) -> None:
    assert _get(production_web, "localhost", "/metrics").status_code == 401


def test_error_pages_are_atriums(production_web: WebServer) -> None:
    page = _get(production_web, "alpha.localhost", "/no-such-page/")
    assert page.status_code == 404 and "Not found" in page.text and "Django" not in page.text
    api = _get(production_web, "alpha.localhost", "/api/no-such-thing/")
    assert api.status_code == 404 and api.json()["error"]["type"] == "not_found_error"


def test_request_limits_answer_before_django(production_web: WebServer) -> None:
    """config.serve.limits refuses these before Django (documented in docs/security.md), never a 500; just under
    each limit is served."""
    long_line = _get(production_web, "alpha.localhost", "/chat/?q=" + "a" * 9000)
    assert long_line.status_code == 414 and "request line" in long_line.text
    big_header = _get(production_web, "alpha.localhost", "/chat/", **{"X-Big": "b" * 20000})
    assert big_header.status_code == 431 and "too large" in big_header.text
    many = {f"X-H{i}": "v" for i in range(120)}
    assert _get(production_web, "alpha.localhost", "/chat/", **many).status_code == 431
    assert _get(production_web, "alpha.localhost", "/healthz", **{"X-Big": "b" * 15000}).status_code == 200
    assert _get(production_web, "alpha.localhost", "/healthz?q=" + "a" * 7000).status_code == 200

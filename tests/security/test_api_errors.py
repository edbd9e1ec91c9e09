"""Issue 20 (and 14, "bad input"): one error shape on every API path, mapped once (config/http.py).

Every /api/ and /v1/ route of the tenant URLconf is walked (the list comes from the resolver, so a new route is
covered the day it is added) with each method, and answered wrongly on purpose: no credentials, a bad API key, a bad
bearer token, a malformed JSON body with a good key, a session without the CSRF token. Each answer must be a JSON 4xx
in Anthropic's error shape (`{"type": "error", "error": {"type", "message"}}`): never HTML, never a 5xx, never DRF's
`{"detail": ...}`.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

# Pages about the API, not the API: the OpenAPI document and Swagger UI (a browser page).
NOT_ENDPOINTS = ("api/schema/", "api/docs/")
METHODS = ("get", "post", "put", "patch", "delete")
BODYLESS = ("/share/",)  # POST turns sharing on; the body is not read


def _routes(patterns: Any = None, prefix: str = "") -> list[str]:
    """Every concrete /api/ and /v1/ path of the tenant URLconf, with a random id for each parameter."""
    found: list[str] = []
    for entry in patterns if patterns is not None else get_resolver("config.urls_tenant").url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found += _routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            path = re.sub(r"<[^>]+>", str(uuid.uuid4()), route)
            path = path.replace("^v1/(?P<rest>.*)$", "v1/not-a-thing")
            if path.startswith(("api/", "v1/")) and not path.startswith(NOT_ENDPOINTS):
                found.append("/" + path)
    return sorted(set(found))


ROUTES = _routes()


def test_the_walk_covers_the_api() -> None:
    assert {"/v1/messages", "/v1/models", "/api/conversations/", "/api/access/me/", "/api/usage/me/",
            "/api/presets/", "/api/models/"} <= set(ROUTES)
    assert len(ROUTES) >= 15, ROUTES


def assert_error_shape(response: Any, where: str, statuses: tuple[int, ...] = ()) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (where, response.status_code, response.content[:300])
    if statuses:
        assert response.status_code in statuses, (where, response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), (where, response["Content-Type"])
    data: dict[str, Any] = response.json()
    assert data.get("type") == "error" and set(data) == {"type", "error"}, (where, data)
    assert isinstance(data["error"].get("type"), str) and data["error"]["type"], (where, data)
    assert isinstance(data["error"].get("message"), str) and data["error"]["message"], (where, data)
    return data


def _send(client: Client, method: str, path: str, **extra: Any) -> Any:
    body = b"" if method == "get" else b"{}"
    return client.generic(method.upper(), path, data=body, content_type="application/json", **extra)


@pytest.mark.parametrize("path", ROUTES)
def test_unauthenticated_and_bad_credentials(path: str, tenant_a: Any) -> None:
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    for method in METHODS:
        for label, headers in (("no credentials", {}),
                               ("bad API key", {"HTTP_X_API_KEY": "atr_nothing_" + "x" * 40}),
                               ("bad bearer", {"HTTP_AUTHORIZATION": "Bearer not.a.jwt"}),
                               ("unknown scheme", {"HTTP_AUTHORIZATION": "Basic Zm9vOmJhcg=="})):
            response = _send(client, method, path, **headers)
            where = f"{method.upper()} {path} ({label})"
            if response.status_code == 404 and path.startswith("/v1/not-a-thing"):
                assert_error_shape(response, where)
                continue
            data = assert_error_shape(response, where, (401, 403, 405))
            if response.status_code == 401:
                assert data["error"]["type"] == "authentication_error", where


@pytest.mark.parametrize("path", ROUTES)
def test_malformed_json_with_a_good_key(path: str, tenant_a: Any, make_user: Any, api_key_for: Any,
                                        consented: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, "power_user")
    consented(tenant_a, user)
    key = api_key_for(tenant_a, user)
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False, HTTP_X_API_KEY=key)
    created = client.post("/api/conversations/", data={"title": "walk", "model": "claude-sonnet-5-5"},
                          content_type="application/json")
    assert created.status_code == 201, created.content
    mine = path.replace(path.split("/")[3], created.json()["id"]) if path.startswith("/api/conversations/") \
        and path.count("/") > 3 else path
    for method in ("post", "put", "patch"):
        for junk in (b"{not json", b'{"a": [1, 2', b"\xff\xfe", b"[" * 200 + b"]" * 200):
            response = client.generic(method.upper(), mine, data=junk, content_type="application/json")
            where = f"{method.upper()} {mine} <- {junk[:12]!r}"
            if mine.endswith(BODYLESS) and response.status_code < 300:
                continue  # these actions read no body: there is nothing to be malformed
            assert_error_shape(response, where, (400, 404, 405, 415))


def test_drf_refusals_speak_the_one_shape(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    """What DRF used to answer as {"detail": ...}: not signed in, CSRF missing, wrong method, invalid input."""
    anonymous = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    data = assert_error_shape(anonymous.get("/api/conversations/"), "anonymous", (401, 403))
    assert "credentials" in data["error"]["message"].lower() or "authentication" in data["error"]["message"].lower()
    user = make_user(tenant_a, "basic_user")
    session = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False, enforce_csrf_checks=True)
    with in_tenant(tenant_a):
        session.force_login(user)
    csrf = assert_error_shape(session.post("/api/conversations/", data={}, content_type="application/json"),
                              "session without CSRF", (403,))
    assert "CSRF" in csrf["error"]["message"]
    assert csrf["error"]["type"] == "permission_error"
    session = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    with in_tenant(tenant_a):
        session.force_login(user)
    wrong = assert_error_shape(session.put("/api/models/"), "PUT /api/models/", (405,))
    assert "PUT" in wrong["error"]["message"]
    invalid = assert_error_shape(session.post("/api/presets/", data={"name": ""}, content_type="application/json"),
                                 "invalid preset", (400,))
    assert invalid["error"]["type"] == "invalid_request_error"
    missing = assert_error_shape(session.get("/api/no-such-thing/"), "unknown /api/ path", (404,))
    assert missing["error"]["type"] == "not_found_error"

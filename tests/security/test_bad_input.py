"""Issue 14, "bad input": every API path answers bad input with a JSON 4xx in its own format, never a 500 and
never HTML; forms refuse large bodies before parsing them; browsers get Atrium's own error pages.

The findings reproduced here: a JWT whose `kid` is a JSON object gave an unauthenticated 500 (HTML on /api/);
deeply nested JSON gave a 500 on /v1/messages and an HTML 500 on /api/conversations/; the unauthenticated login
form parsed a 31 MiB body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.access.conftest import b64url
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db

ME = "/api/access/me/"


def _token(header: Any, payload: Any = None, raw_header: bytes | None = None) -> str:
    head = raw_header if raw_header is not None else json.dumps(header).encode()
    claims = json.dumps(payload if payload is not None else {"iss": "x", "sub": "y"}).encode()
    return f"{b64url(head)}.{b64url(claims)}.{b64url(b'signature')}"


MALFORMED_TOKENS = {
    "kid is an object": _token({"alg": "RS256", "typ": "JWT", "kid": {"$ne": None}}),
    "kid is a list": _token({"alg": "RS256", "kid": ["a", "b"]}),
    "kid is a number": _token({"alg": "RS256", "kid": 7}),
    "alg is an object": _token({"alg": {"x": 1}, "kid": "k"}),
    "header is a list": _token(None, raw_header=b"[1, 2]"),
    "header is not JSON": _token(None, raw_header=b"{not json"),
    "payload is a list": _token({"alg": "RS256", "kid": "k"}, payload=[1, 2]),
    "two segments": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0",
    "binary garbage": "\u00ff\u00fe.\u00fd.\u00fc",
}


def _assert_json(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    parsed: dict[str, Any] = response.json()
    return parsed


@pytest.mark.parametrize("case", list(MALFORMED_TOKENS))
def test_malformed_jwt_is_a_401_json_everywhere(case: str, sso: Any, client_a: Any) -> None:
    token = MALFORMED_TOKENS[case]
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    api = _assert_json(client.get(ME, HTTP_AUTHORIZATION=f"Bearer {token}"), 401)
    message = api["error"]["message"]
    assert api["type"] == "error" and api["error"]["type"] == "authentication_error"
    assert "malformed" in message or "algorithm" in message, api
    v1 = _assert_json(client.post("/v1/messages", data=json.dumps(body()), content_type="application/json",
                                  HTTP_AUTHORIZATION=f"Bearer {token}"), 401)
    assert v1["type"] == "error" and v1["error"]["type"] == "authentication_error"


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [65, 5_000, 200_000])
def test_deeply_nested_json_is_a_400(depth: int, sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                     api_key_for: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    key = api_key_for(tenant_a, user)
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    nested = f'{{"model": "claude-haiku-5-5", "max_tokens": 8, "messages": {_deep(depth)}}}'
    v1 = _assert_json(client.post("/v1/messages", data=nested, content_type="application/json",
                                  HTTP_X_API_KEY=key), 400)
    assert v1["error"]["type"] == "invalid_request_error" and "nested" in v1["error"]["message"]
    api = _assert_json(client.post("/api/conversations/", data=f'{{"title": {_deep(depth)}}}',
                                   content_type="application/json", HTTP_X_API_KEY=key), 400)
    assert "nested deeper" in json.dumps(api)
    assert sim.requests() == []


def test_moderately_nested_tool_schema_is_still_accepted(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                                         api_key_for: Any) -> None:
    key = api_key_for(tenant_a, make_user(tenant_a, "power_user"))
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(20):
        schema = {"type": "object", "properties": {"inner": schema}}
    response = post_messages(client_a, key, body(model="claude-haiku-5-5", tools=[
        {"name": "deep", "description": "nested", "input_schema": schema}]))
    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_sign_in_forms_refuse_a_large_body_unparsed(path: str, client_a: Any, settings: Any) -> None:
    big = b"username=x&password=" + b"A" * (31 * 1024 * 1024)
    client = Client(HTTP_HOST="alpha.localhost", enforce_csrf_checks=True, raise_request_exception=False)
    response = client.generic("POST", path, big, content_type="application/x-www-form-urlencoded")
    # 413 from the body limit, not the CSRF 403 that parsing the form first would have produced.
    assert response.status_code == 413, response.content[:200]
    assert b"Request too large" in response.content and str(settings.ATRIUM_FORM_MAX_BYTES).encode() in \
        response.content


def test_v1_keeps_its_large_limit_and_refuses_beyond_it(client_a: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    fits = client.post("/v1/messages", data=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                       content_type="application/json")
    assert fits.status_code == 401  # past the body limit (1.x MiB > the form limit), refused for lack of a key
    over = _assert_json(client.post("/v1/messages", data=b"{" + b" " * (3 * 1024 * 1024) + b"}",
                                    content_type="application/json"), 413)
    assert over["error"]["type"] == "request_too_large"


def test_unknown_paths_json_on_apis_and_a_page_for_browsers(client_a: Any) -> None:
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    api = _assert_json(client.get("/api/no-such-thing/"), 404)
    assert api["error"]["type"] == "not_found_error"
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert "Not found" in text and "Django" not in text and "urlpatterns" not in text.lower()


def test_server_error_page_has_request_id_and_no_traceback(client_a: Any, tenant_a: Any, make_user: Any,
                                                           in_tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import audit.views

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internal detail /etc/atrium")

    monkeypatch.setattr(audit.views, "notice_current", boom)
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    with in_tenant(tenant_a):
        client.force_login(make_user(tenant_a, "basic_user"))
    response = client.get("/consent/")
    assert response.status_code == 500
    text = response.content.decode()
    assert "Something went wrong" in text and response["request-id"] in text
    assert "RuntimeError" not in text and "secret internal detail" not in text and "Traceback" not in text


def test_csrf_failure_is_atriums_page(client_a: Any, tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    client = Client(HTTP_HOST="alpha.localhost", enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert b"reload the page" in response.content and b"CSRF verification failed" not in response.content


def test_unknown_conversation_is_atriums_404(client_a: Any, tenant_a: Any, make_user: Any, in_tenant: Any,
                                             consented: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    consented(tenant_a, user)
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    with in_tenant(tenant_a):
        client.force_login(user)
    for path in ("/chat/00000000-0000-0000-0000-000000000000/", "/chat/not-a-uuid/"):
        page = client.get(path)
        assert page.status_code == 404, (path, page.status_code)
        assert b"Not found" in page.content and b"Django" not in page.content


def _depth_walked(value: Any, max_depth: int) -> bool:
    """The depth check as first written (a stack of (node, depth)): the reference for the level-at-a-time one."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def test_the_depth_limit_answers_as_the_first_walk_did() -> None:
    """config.request_limits: the level-at-a-time walk agrees with the first one on random documents at every
    limit around their depth, and json_loads_limited (which skips the walk when the text has too few '[' and '{'
    to nest that deep, brackets inside strings included) refuses exactly what the walk refuses, bytes or text."""
    import random

    from config.request_limits import JsonTooDeep, json_depth_exceeds, json_loads_limited

    rng = random.Random(14)

    def document(depth: int) -> Any:
        if depth == 0 or rng.random() < 0.2:
            return rng.choice([1, "x", "[{", None, 2.5, True, "}]"])
        if rng.random() < 0.5:
            return [document(depth - 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}": document(depth - 1) for i in range(rng.randint(0, 3))}

    documents = [document(rng.randint(0, 9)) for _ in range(400)] + [
        [], {}, 3, "[[[[", [[[[]]]], {"a": {"b": {"c": []}}}, [[], [[]], [[[]]]], {"s": "[" * 100}]
    for value in documents:
        text = json.dumps(value)
        for limit in range(0, 11):
            expected = _depth_walked(value, limit)
            assert json_depth_exceeds(value, limit) is expected, (text, limit)
            for raw in (text, text.encode()):
                if expected:
                    with pytest.raises(JsonTooDeep):
                        json_loads_limited(raw, max_depth=limit)
                else:
                    assert json_loads_limited(raw, max_depth=limit) == value

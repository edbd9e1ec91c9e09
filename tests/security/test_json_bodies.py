"""Request bodies json accepts that orjson does not (config.jsonfast hands them to json): what each one gets from
/v1/messages and /api/conversations/. NaN and Infinity are refused (they are not JSON, and the fast encoder would
pass them upstream as null); integers beyond 64 bits, lone surrogates, a BOM and nesting between orjson's limit
and ours read as json reads them. Never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.chat.conftest import body

pytestmark = pytest.mark.django_db

MODEL = "claude-haiku-5-5"


@pytest.fixture
def key(tenant_a: Any, make_user: Any, api_key_for: Any) -> str:
    return str(api_key_for(tenant_a, make_user(tenant_a, "basic_user")))


def _post(path: str, raw: bytes, key: str) -> Any:
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    return client.post(path, data=raw, content_type="application/json", HTTP_X_API_KEY=key)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str, sim: Any, key: str) -> None:
    raw = f'{{"model": "{MODEL}", "max_tokens": 8, "temperature": {constant}, "messages": [{{"role": "user", ' \
          f'"content": "hi"}}]}}'.encode()
    response = _post("/v1/messages", raw, key)
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == f"The request body is not valid JSON: {constant} is not a JSON value (JSON has no " \
                               "NaN or Infinity)"
    api = _post("/api/conversations/", f'{{"title": "t", "x": [{constant}]}}'.encode(), key)
    assert api.status_code == 400 and constant in json.dumps(api.json()), api.content[:300]
    assert sim.requests() == []


def test_malformed_json_keeps_jsons_message(sim: Any, key: str) -> None:
    response = _post("/v1/messages", b'{"model": "x", "max_tokens": 8,}', key)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == ("The request body is not valid JSON: Expecting property name "
                                                   "enclosed in double quotes: line 1 column 32 (char 31)")


def test_an_integer_beyond_64_bits_is_read_as_an_integer(sim: Any, key: str) -> None:
    """orjson would read 2**70 as a float: json reads the integer, which the policy clamps, as before."""
    from config.request_limits import json_loads_limited

    raw = json.dumps(body(model=MODEL, max_tokens=2**70)).encode()
    assert json_loads_limited(raw)["max_tokens"] == 2**70 and type(json_loads_limited(raw)["max_tokens"]) is int
    response = _post("/v1/messages", raw, key)
    assert response.status_code == 200, response.content[:300]
    assert [type(r["max_tokens"]) for r in sim.requests()] == [int]


def test_a_bom_and_nesting_past_orjsons_limit_read_as_json_reads_them(sim: Any, key: str) -> None:
    ok = _post("/v1/messages", b"\xef\xbb\xbf" + json.dumps(body(model=MODEL)).encode(), key)
    assert ok.status_code == 200, ok.content[:300]
    deep = f'{{"model": "{MODEL}", "max_tokens": 8, "messages": {"[" * 1100 + "]" * 1100}}}'.encode()
    refused = _post("/v1/messages", deep, key)
    assert refused.status_code == 400 and "nested" in refused.json()["error"]["message"]


@pytest.mark.parametrize("text", ["a \ud800 b", "\udc00", "x\ud83dy"])
def test_a_lone_surrogate_is_a_400_before_any_provider_call(text: str, sim: Any, key: str) -> None:
    """It has no UTF-8: json read it, the provider was called, and the call's record then failed (a 500)."""
    raw = json.dumps(body(text, model=MODEL)).encode()
    assert b"\\ud" in raw or b"\\udc" in raw
    response = _post("/v1/messages", raw, key)
    assert response.status_code == 400, response.content[:300]
    assert "lone surrogate" in response.json()["error"]["message"]
    api = _post("/api/conversations/", json.dumps({"title": text}).encode(), key)
    assert api.status_code == 400 and "lone surrogate" in json.dumps(api.json()), api.content[:300]
    assert sim.requests() == []


def test_a_surrogate_pair_is_text(sim: Any, key: str) -> None:
    raw = json.dumps(body("smile \U0001f600", model=MODEL)).encode()
    assert b"\\ud83d\\ude00" in raw
    assert _post("/v1/messages", raw, key).status_code == 200

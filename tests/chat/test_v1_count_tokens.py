"""POST /v1/messages/count_tokens: failover, policy and audit as a Messages call, no quota charge; the official
Python SDK's `client.messages.count_tokens` against it (in process, through Django's WSGI handler)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from audit.models import AuditEntry
from inference.models import UsageDaily
from tests.chat.conftest import post_messages
from tests.conftest import tenant_host

pytestmark = pytest.mark.django_db

COUNT = {"model": "claude-sonnet-5-5", "system": "Be brief.",
         "messages": [{"role": "user", "content": "Count the tokens of this question, please."}]}


@pytest.fixture
def in_process() -> Iterator[Callable[[Any, str], anthropic.Anthropic]]:
    """in_process(tenant, key): the official SDK talking to Atrium through its WSGI handler in this thread, so it
    sees this test's transaction (whose connection the handler must then not close, as Django's test client
    arranges it too)."""
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    app = get_wsgi_application()

    def _client(tenant: Any, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=key, base_url=f"http://{tenant_host(tenant)}", max_retries=0,
                                   http_client=httpx2.Client(transport=httpx2.WSGITransport(app=app)))

    try:
        yield _client
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def basic(tenant_a: Any, make_user: Any, api_key_for: Any) -> tuple[Any, str]:
    user = make_user(tenant_a, "basic_user")
    return user, api_key_for(tenant_a, user)


def post_count(client: Any, key: str, body: Any, **headers: str) -> Any:
    return client.post("/v1/messages/count_tokens", data=json.dumps(body), content_type="application/json",
                       HTTP_X_API_KEY=key, **headers)


def test_count_tokens_is_audited_and_charges_nothing(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                     in_tenant: Any) -> None:
    from config.redis import redis_client

    def quota_state() -> dict[Any, Any]:
        client = redis_client()
        return {k: client.dump(k) for k in sorted(client.scan_iter("*quota*"))}

    user, key = basic
    before = quota_state()
    response = post_count(client_a, key, COUNT)
    assert response.status_code == 200, response.content
    tokens = response.json()["input_tokens"]
    assert isinstance(tokens, int) and tokens > 7
    assert sim.requests()[-1]["path"] == "/anthropic/v1/messages/count_tokens"
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(event_type="count_tokens", user_id=user.pk)
        assert entry.status == "success" and entry.input_tokens == tokens and entry.output_tokens == 0
        assert entry.metadata["provider"] == "anthropic" and entry.metadata["attempts"][0]["outcome"] == "ok"
        assert entry.input_hash and "Count the tokens" not in json.dumps(entry.metadata)
        assert not UsageDaily.objects.filter(user=user).exists()
        assert not AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).exists()
    assert quota_state() == before  # nothing reserved, nothing charged
    assert post_messages(client_a, key, {**COUNT, "max_tokens": 16}).status_code == 200
    assert quota_state() != before  # (a message call does change it: the comparison can fail)


def test_count_tokens_fails_over_like_a_message(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                in_tenant: Any) -> None:
    user, key = basic
    sim.faults.set("anthropic", status=529)
    response = post_count(client_a, key, COUNT)
    assert response.status_code == 200, response.content
    assert sim.requests()[-1]["path"].endswith("/count-tokens")  # Bedrock's CountTokens
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(event_type="count_tokens", user_id=user.pk)
        assert [a["outcome"] for a in entry.metadata["attempts"]] == ["failover", "ok"]
        assert entry.metadata["provider"] == "bedrock"


def test_count_tokens_all_down_is_529_and_audited(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                  in_tenant: Any) -> None:
    user, key = basic
    sim.faults.set("anthropic", status=500)
    sim.faults.set("bedrock", "*", status=500)
    sim.faults.set("vertex", "*", status=500)
    response = post_count(client_a, key, COUNT)
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    with in_tenant(tenant_a):
        assert AuditEntry.objects.get(event_type="count_tokens", user_id=user.pk).status == "error"


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    ({"model": "claude-sonnet-5-5"}, 400, "messages"),
    ({"model": "claude-sonnet-5-5", "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
    ({**COUNT, "max_tokens": 5}, 400, "max_tokens"),
    ({**COUNT, "thinking": "yes"}, 400, "thinking"),
    ({**COUNT, "model": "claude-nonexistent-1"}, 404, "claude-nonexistent-1"),
    ([1, 2], 400, "JSON object"),
])
def test_count_tokens_bad_input_is_an_anthropic_error(sim: Any, client_a: Any, basic: Any, body: Any, status: int,
                                                      fragment: str) -> None:
    _user, key = basic
    response = post_count(client_a, key, body)
    assert response.status_code == status, response.content
    data = response.json()
    assert data["type"] == "error" and fragment in data["error"]["message"]
    assert data["error"]["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert not sim.requests()


def test_count_tokens_refuses_get_and_a_model_outside_policy(sim: Any, client_a: Any, basic: Any) -> None:
    _user, key = basic
    assert client_a.get("/v1/messages/count_tokens", HTTP_X_API_KEY=key).status_code == 405
    response = post_count(client_a, key, {**COUNT, "model": "claude-opus-5-5"})  # basic_user: no opus
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    assert post_count(client_a, "atr_00000000_forged", COUNT).status_code == 401


def test_python_sdk_count_tokens(sim: Any, tenant_a: Any, in_process: Any, make_user: Any,
                                 api_key_for: Any) -> None:
    client = in_process(tenant_a, api_key_for(tenant_a, make_user(tenant_a, "power_user")))
    counted = client.messages.count_tokens(**COUNT)  # type: ignore[arg-type]
    assert counted.input_tokens > 7
    with_tools = client.messages.count_tokens(
        **COUNT, tools=[{"name": "weather", "description": "Weather for a city",  # type: ignore[arg-type]
                         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    assert with_tools.input_tokens > counted.input_tokens
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model="claude-sonnet-5-5", messages=[])

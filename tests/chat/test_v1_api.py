"""/v1/messages and /v1/models through the real middleware, gateway, router and provider simulator."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEntry
from inference.models import UsageDaily
from tests.chat.conftest import body, post_messages, sse_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def basic(tenant_a: Any, make_user: Any, api_key_for: Any) -> tuple[Any, str]:
    user = make_user(tenant_a, "basic_user")
    return user, api_key_for(tenant_a, user)


def _error(response: Any) -> tuple[str, str]:
    data = response.json()
    assert data["type"] == "error"
    return data["error"]["type"], data["error"]["message"]


def test_json_message_records_usage_and_audit(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                              in_tenant: Any) -> None:
    user, key = basic
    response = post_messages(client_a, key, body("What is Atrium?"))
    assert response.status_code == 200, response.content
    message = response.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "claude-sonnet-5-5"
    assert message["content"][0]["type"] == "text" and message["content"][0]["text"]
    assert response["request-id"].startswith("req_")
    assert response["Content-Type"] == "application/json"
    with in_tenant(tenant_a):
        usage = UsageDaily.objects.get(user=user, model="claude-sonnet-5-5", provider="anthropic")
        assert usage.requests == 1
        assert usage.input_tokens == message["usage"]["input_tokens"]
        assert usage.output_tokens == message["usage"]["output_tokens"]
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).get()
        assert entry.status == "success" and entry.metadata["provider"] == "anthropic"
        assert entry.metadata["attempts"][0]["outcome"] == "ok"
        assert entry.input_hash and "What is Atrium" not in str(entry.metadata)


def test_failover_is_recorded_in_audit_metadata(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                in_tenant: Any) -> None:
    user, key = basic
    sim.faults.set("anthropic", status=503)
    response = post_messages(client_a, key, body())
    assert response.status_code == 200
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).get()
        assert entry.metadata["provider"] == "bedrock" and entry.metadata["region"] == "us-east-1"
        assert [a["outcome"] for a in entry.metadata["attempts"]] == ["failover", "ok"]
        assert UsageDaily.objects.filter(user=user, provider="bedrock").exists()


def test_stream_relays_every_event(sim: Any, client_a: Any, basic: Any, tenant_a: Any, in_tenant: Any) -> None:
    user, key = basic
    response = post_messages(client_a, key, body("Stream please", stream=True))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = sse_events(response)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    assert all(e["event"] == e["type"] for e in events)
    assert events[0]["message"]["model"] == "claude-sonnet-5-5"
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    with in_tenant(tenant_a):
        usage = UsageDaily.objects.get(user=user)
        final = next(e for e in events if e["type"] == "message_delta")
        assert usage.output_tokens == final["usage"]["output_tokens"]
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).get()
        assert entry.status == "success" and entry.metadata["incomplete"] is False
    assert text


def test_stream_error_after_first_byte_ends_with_error_event(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                             in_tenant: Any) -> None:
    user, key = basic
    sim.faults.set("anthropic", error_after_events=4)
    events = sse_events(post_messages(client_a, key, body("Break", stream=True)))
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] in ("api_error", "overloaded_error")
    assert not [e for e in events if e["type"] == "message_stop"]
    assert not sim.requests("bedrock"), "no failover after the first byte"
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).get()
        assert entry.status == "incomplete" and entry.metadata["incomplete"] is True


def test_notice_is_appended_to_system_prompt(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                             tenant_update: Any, consented: Any) -> None:
    user, key = basic
    tenant_update(tenant_a, processing_notice="Notice: prompts are retained 30 days.")
    consented(tenant_a, user)
    response = post_messages(client_a, key, body(system="You are terse."))
    assert response.status_code == 200
    system = sim.requests("anthropic")[-1]["system"]
    assert system == "You are terse.\n\nNotice: prompts are retained 30 days."


def test_consent_required_before_first_call(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                            tenant_update: Any, consented: Any) -> None:
    user, key = basic
    tenant_update(tenant_a, processing_notice="You must accept this.")
    response = post_messages(client_a, key, body())
    assert response.status_code == 403
    kind, message = _error(response)
    assert kind == "permission_error" and "/consent/" in message and "version 1" in message
    assert not sim.requests()
    consented(tenant_a, user)
    assert post_messages(client_a, key, body()).status_code == 200
    # A new notice version needs a new consent.
    tenant_update(tenant_a, processing_notice="You must accept this, version two.")
    response = post_messages(client_a, key, body())
    assert response.status_code == 403 and "version 2" in _error(response)[1]


@pytest.mark.parametrize(("payload", "needle"), [
    ({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "claude-sonnet-5-5", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": []}, "messages"),
    ({"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "robot", "content": "x"}]}, "role"),
    ({"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
      "stream": "yes"}, "stream"),
    ([1, 2, 3], "JSON object"),
])
def test_invalid_requests_are_400_with_a_precise_message(sim: Any, client_a: Any, basic: Any, payload: Any,
                                                          needle: str) -> None:
    _user, key = basic
    response = post_messages(client_a, key, payload)
    assert response.status_code == 400
    kind, message = _error(response)
    assert kind == "invalid_request_error" and needle in message
    assert not sim.requests()


def test_malformed_json_is_400(sim: Any, client_a: Any, basic: Any) -> None:
    _user, key = basic
    response = client_a.post("/v1/messages", data="{not json", content_type="application/json", HTTP_X_API_KEY=key)
    assert response.status_code == 400 and "not valid JSON" in _error(response)[1]


def test_authentication_errors(sim: Any, client_a: Any) -> None:
    response = post_messages(client_a, "", body())
    assert response.status_code == 401 and _error(response)[0] == "authentication_error"
    response = post_messages(client_a, "atr_deadbeef_notarealkey", body())
    assert response.status_code == 401 and _error(response)[0] == "authentication_error"


def test_unknown_model_is_404(sim: Any, client_a: Any, basic: Any) -> None:
    _user, key = basic
    response = post_messages(client_a, key, body(model="claude-nonexistent-1"))
    assert response.status_code == 404
    kind, message = _error(response)
    assert kind == "not_found_error" and "claude-nonexistent-1" in message


def test_upstream_400_passes_through_without_failover(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                      in_tenant: Any) -> None:
    user, key = basic
    sim.faults.set("anthropic", status=400)
    response = post_messages(client_a, key, body())
    assert response.status_code == 400 and _error(response)[0] == "invalid_request_error"
    assert not sim.requests("bedrock")
    with in_tenant(tenant_a):  # the failed call is counted under the provider that answered it, not ""
        usage = UsageDaily.objects.get(user=user)
        assert (usage.provider, usage.errors) == ("anthropic", 1)
        assert AuditEntry.objects.get(event_type="model_call", user_id=user.pk).metadata["provider"] == "anthropic"


def test_all_providers_down_is_529_overloaded(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                              in_tenant: Any, caplog: Any) -> None:
    user, key = basic
    for provider in ("anthropic", "bedrock", "vertex"):
        sim.faults.set(provider, "*" if provider != "anthropic" else "", status=503)
    with caplog.at_level("WARNING"):
        response = post_messages(client_a, key, body())
    assert response.status_code == 529 and response.reason_phrase == "Overloaded"
    kind, message = _error(response)
    # The caller learns what it can act on and the request id; the provider order stays in the audit entry.
    assert kind == "overloaded_error" and "unavailable" in message and response["request-id"] in message
    assert not any(provider in message for provider in ("anthropic", "bedrock", "vertex"))
    logged = [r for r in caplog.records if "529" in r.getMessage()]
    assert [r.levelname for r in logged] == ["WARNING"] and response["request-id"] in logged[0].getMessage()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).get()
        assert entry.status == "error" and len(entry.metadata["attempts"]) == 3
        assert "anthropic" in entry.error
        usage = UsageDaily.objects.get(user=user)
        assert usage.errors == 1 and usage.provider == "vertex"  # the last provider tried, never ""


def test_clamp_is_reported_in_a_header(sim: Any, client_a: Any, basic: Any) -> None:
    _user, key = basic
    response = post_messages(client_a, key, body(max_tokens=6000))
    assert response.status_code == 200
    assert response["atrium-max-tokens-clamped"] == "requested=6000; granted=4096; reason=high_tokens"
    assert sim.requests("anthropic")[-1]["max_tokens"] == 4096


def test_quota_refusal_is_429_with_retry_after(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                               tenant_update: Any) -> None:
    _user, key = basic
    tenant_update(tenant_a, requests_per_minute=2)
    assert post_messages(client_a, key, body()).status_code == 200
    assert post_messages(client_a, key, body()).status_code == 200
    response = post_messages(client_a, key, body())
    assert response.status_code == 429
    kind, message = _error(response)
    assert kind == "rate_limit_error" and "requests per minute" in message
    assert 1 <= int(response["retry-after"]) <= 60


def test_token_budget_refunds_unused_reservation(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                 tenant_update: Any) -> None:
    from access.quotas import quota_tokens_used_today

    _user, key = basic
    tenant_update(tenant_a, tokens_per_day=3000)
    response = post_messages(client_a, key, body(max_tokens=2000))
    assert response.status_code == 200
    usage = response.json()["usage"]
    assert quota_tokens_used_today(tenant=tenant_a) == usage["input_tokens"] + usage["output_tokens"]
    # The reservation (2000 + input) was refunded, so a second call of the same size still fits.
    assert post_messages(client_a, key, body(max_tokens=2000)).status_code == 200
    response = post_messages(client_a, key, body(max_tokens=2990))
    assert response.status_code == 429 and "tokens per day" in _error(response)[1]
    assert int(response["retry-after"]) > 0


def test_models_lists_only_permitted_models(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                            api_key_for: Any, tenant_update: Any) -> None:
    basic = make_user(tenant_a, "basic_user")
    power = make_user(tenant_a, "power_user")
    ids = lambda user: [m["id"] for m in client_a.get(  # noqa: E731
        "/v1/models", HTTP_X_API_KEY=api_key_for(tenant_a, user)).json()["data"]]
    assert "claude-opus-5-5" not in ids(basic) and "claude-sonnet-5-5" in ids(basic)
    assert "claude-opus-5-5" in ids(power)
    tenant_update(tenant_a, allowed_models=["haiku"])
    assert ids(power) == ["claude-haiku-5-5"]
    key = api_key_for(tenant_a, basic)
    assert client_a.get("/v1/models/claude-haiku-5-5", HTTP_X_API_KEY=key).json()["id"] == "claude-haiku-5-5"
    assert client_a.get("/v1/models/claude-opus-5-5", HTTP_X_API_KEY=key).status_code == 404


def test_unknown_v1_path_is_anthropic_shaped_404(sim: Any, client_a: Any) -> None:
    response = client_a.post("/v1/complete", data="{}", content_type="application/json")
    assert response.status_code == 404 and _error(response)[0] == "not_found_error"


# --- the permission matrix through the real API (each seeded role x tier, tools, vision, max_tokens) ----------

TIER_MODELS = {"opus": "claude-opus-5-5", "sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5"}
ROLE_TIERS = {"viewer": set(), "basic_user": {"sonnet", "haiku"}, "power_user": {"opus", "sonnet", "haiku"},
              "admin": {"opus", "sonnet", "haiku"}, "compliance_officer": set()}
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
TOOL = {"name": "lookup", "description": "Look something up", "input_schema": {"type": "object"}}


def _role_perms(tenant: Any, role: str, in_tenant: Any) -> set[str]:
    from django.contrib.auth.models import Group

    with in_tenant(tenant):
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))


@pytest.mark.parametrize("role", list(ROLE_TIERS))
def test_permission_matrix_through_the_api(role: str, sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                           api_key_for: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, role)
    key = api_key_for(tenant_a, user)
    perms = _role_perms(tenant_a, role, in_tenant)
    can_write = "write" in perms
    for tier, model in TIER_MODELS.items():
        response = post_messages(client_a, key, body(model=model))
        allowed = can_write and tier in ROLE_TIERS[role]
        assert response.status_code == (200 if allowed else 403), (role, tier, response.content)
        if not allowed:
            assert _error(response)[0] == "permission_error"
            assert ("access.write" if not can_write else f"access.use_{tier}") in _error(response)[1]
    if not can_write:
        return
    tools = post_messages(client_a, key, body(model="claude-haiku-5-5", tools=[TOOL]))
    assert tools.status_code == (200 if "use_tools" in perms else 403), (role, tools.content)
    vision = post_messages(client_a, key, {"model": "claude-haiku-5-5", "max_tokens": 32, "messages": [
        {"role": "user", "content": [IMAGE, {"type": "text", "text": "What is this?"}]}]})
    assert vision.status_code == (200 if "use_vision" in perms else 403), (role, vision.content)
    big = post_messages(client_a, key, body(model="claude-haiku-5-5", max_tokens=6000))
    assert big.status_code == 200
    expected = 6000 if "high_tokens" in perms else 4096
    assert sim.requests()[-1]["max_tokens"] == expected
    assert ("atrium-max-tokens-clamped" in big) == (expected != 6000)


def test_client_going_away_mid_stream_is_recorded_incomplete(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                             in_tenant: Any) -> None:
    """The web chat's Stop button (or a dropped connection) closes the stream: what was produced is recorded,
    marked incomplete, and the quota is charged for it."""
    user, key = basic
    response = post_messages(client_a, key, body("Stop me", stream=True))
    chunks = iter(response.streaming_content)
    first = next(chunks)
    assert b"message_start" in first
    for close in response._resource_closers:  # what response.close() does when the client disconnects (without
        close()                               # the request_finished signal, which would close the test's DB connection)
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).get()
        assert entry.status == "incomplete" and entry.metadata["incomplete"] is True
        assert "went away" in entry.error


def test_oversized_body_is_413_not_500(sim: Any, client_a: Any, basic: Any, settings: Any) -> None:
    _user, key = basic
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = post_messages(client_a, key, body("x" * 20_000))
    assert response.status_code == 413
    assert _error(response) == ("request_too_large",
                                "The request body is larger than this server accepts (10000 bytes).")
    assert not sim.requests()


def test_admission_consults_the_tenants_own_scope_breaker(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                           tenant_update: Any, in_tenant: Any) -> None:
    """The one-round-trip admission script reads the breaker of the tenant's credential scope, not the platform's."""
    from inference import breaker
    from inference.targets import parse_target
    from tenants.models import Tenant

    user, key = basic
    own = {"api_key": "sk-ant-alpha-own"}
    tenant_update(tenant_a, credentials={"anthropic": own})
    assert Tenant.objects.get(pk=tenant_a.pk).credentials == {"anthropic": own}
    breaker.breaker_record_failure(parse_target("anthropic", own).breaker_name, reason="test", force_open=True)
    response = post_messages(client_a, key, body())
    assert response.status_code == 200
    assert not sim.requests("anthropic")  # skipped without a network call
    with in_tenant(tenant_a):
        attempts = AuditEntry.objects.get(event_type="model_call", user_id=user.pk).metadata["attempts"]
    assert [(a["target"], a["outcome"]) for a in attempts][:2] == [("anthropic", "skipped"),
                                                                   ("bedrock:us-east-1", "ok")]
    # The platform's breaker (everyone else's) is closed.
    assert breaker.breaker_state("anthropic").state == "closed"


def test_hedged_call_is_billed_and_recorded_once(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                 tenant_update: Any, in_tenant: Any) -> None:
    user, key = basic
    tenant_update(tenant_a, hedge_delay_ms=100, provider_order=["anthropic", "bedrock:us-east-1"])
    sim.faults.set("anthropic", latency_ms=1500)
    response = post_messages(client_a, key, body("hedged"))
    assert response.status_code == 200 and "bedrock/us-east-1" in response.json()["content"][0]["text"]
    with in_tenant(tenant_a):
        assert list(UsageDaily.objects.filter(user=user).values_list("provider", "requests")) == [("bedrock", 1)]
        entry = AuditEntry.objects.get(event_type="model_call", user_id=user.pk)
    assert [(a["target"], a["outcome"]) for a in entry.metadata["attempts"]] == [
        ("anthropic", "cancelled"), ("bedrock:us-east-1", "ok")]


def test_the_json_answer_is_what_json_response_would_send() -> None:
    """inference.api_v1.json_response (orjson, config.jsonfast) against Django's JsonResponse: the same values and
    Content-Type, also for what only DjangoJSONEncoder can encode, non-ASCII text and nesting; the bytes are
    json.dumps's with DjangoJSONEncoder, compact and UTF-8 (as the Anthropic API writes them); what neither can
    encode is refused the same way."""
    import datetime
    import decimal
    import json
    import uuid

    from django.core.serializers.json import DjangoJSONEncoder
    from django.http import JsonResponse

    from inference.api_v1 import json_response

    data = {"id": "msg_1", "content": [{"type": "text", "text": "caf\u00e9 \u2603 \"quoted\"\n"}], "n": 1.5,
            "stop_sequence": None, "flags": [True, False], "at": datetime.datetime(2026, 12, 7, 3, 4, 5, 678000,
                                                                                    tzinfo=datetime.UTC),
            "day": datetime.date(2026, 12, 7), "cost": decimal.Decimal("0.0012"),
            "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"), "usage": {"input_tokens": 3}}
    ours, django = json_response(data), JsonResponse(data)
    assert json.loads(ours.content) == json.loads(django.content) and ours["Content-Type"] == django["Content-Type"]
    assert ours.content == json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False).encode()
    assert ours.status_code == django.status_code == 200
    with pytest.raises(TypeError):
        JsonResponse({"x": object()})
    with pytest.raises(TypeError):
        json_response({"x": object()})

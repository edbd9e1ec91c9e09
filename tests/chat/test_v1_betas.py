"""anthropic-beta: forwarded to the providers that accept the feature (the Anthropic API as the header, Bedrock and
Vertex as the body's anthropic_beta), allowed per tenant (the platform's list, tightened by the tenant's own),
refused with an Anthropic-shaped 400 otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest

from audit.models import AuditEntry
from tests.chat.conftest import body, post_messages, sse_events
from tests.chat.test_v1_count_tokens import COUNT, in_process, post_count  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

CACHING = "prompt-caching-2024-07-31"
TOOLS = "token-efficient-tools-2025-02-19"
FILES = "files-api-2025-04-14"


@pytest.fixture
def basic(tenant_a: Any, make_user: Any, api_key_for: Any, tenant_update: Any) -> tuple[Any, str]:
    tenant_update(tenant_a, anthropic_beta_allowed=[CACHING, TOOLS, FILES], own_anthropic_beta_allowed=[])
    user = make_user(tenant_a, "basic_user")
    return user, api_key_for(tenant_a, user)


def test_allowed_betas_reach_the_anthropic_api_as_the_header(sim: Any, client_a: Any, basic: Any) -> None:
    _user, key = basic
    response = post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=f"{CACHING}, {TOOLS}")
    assert response.status_code == 200, response.content
    request = sim.requests(provider="anthropic")[-1]
    assert request["betas"] == [CACHING, TOOLS]
    assert request["beta_in_body"] is False  # the Anthropic API takes the header only


@pytest.mark.parametrize("failover_to", ["bedrock", "vertex"])
def test_bedrock_and_vertex_get_the_body_field(sim: Any, client_a: Any, basic: Any, failover_to: str) -> None:
    _user, key = basic
    sim.faults.set("anthropic", status=503)
    if failover_to == "vertex":
        sim.faults.set("bedrock", "*", status=503)
    response = post_messages(client_a, key, body(stream=True), HTTP_ANTHROPIC_BETA=CACHING)
    assert response.status_code == 200
    assert sse_events(response)[-1]["type"] == "message_stop"
    request = sim.requests(provider=failover_to)[-1]
    assert request["betas"] == [CACHING] and request["beta_in_body"] is True


def test_a_beta_not_allowed_is_a_400_and_audited(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                 in_tenant: Any) -> None:
    user, key = basic
    response = post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=f"{CACHING},computer-use-2025-01-24")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "computer-use-2025-01-24" in error["message"] and "anthropic-beta" in error["message"]
    assert not sim.requests()
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(event_type="model_call_refused", user_id=user.pk)
        assert entry.metadata["reason"] == "anthropic_beta"


def test_the_tenant_tightens_the_platform_list(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                               tenant_update: Any) -> None:
    _user, key = basic
    tenant_update(tenant_a, own_anthropic_beta_allowed=[TOOLS])
    refused = post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=CACHING)
    assert refused.status_code == 400 and CACHING in refused.json()["error"]["message"]
    assert post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=TOOLS).status_code == 200


def test_no_platform_list_allows_none(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                      tenant_update: Any) -> None:
    _user, key = basic
    tenant_update(tenant_a, anthropic_beta_allowed=[])
    response = post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=CACHING)
    assert response.status_code == 400
    assert post_messages(client_a, key, body()).status_code == 200  # no header, no question


@pytest.mark.parametrize("header", ["bad name!", ",,", "x" * 120, "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q"])
def test_malformed_header_is_a_400(sim: Any, client_a: Any, basic: Any, header: str) -> None:
    _user, key = basic
    response = post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=header)
    assert response.status_code == 400
    assert "anthropic-beta" in response.json()["error"]["message"]
    assert not sim.requests()


def test_a_beta_only_some_providers_accept_skips_the_others(sim: Any, client_a: Any, basic: Any, settings: Any,
                                                             tenant_a: Any, in_tenant: Any) -> None:
    user, key = basic
    settings.ATRIUM_BETA_PROVIDERS = {FILES: ["anthropic"]}
    assert post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=FILES).status_code == 200
    sim.faults.set("anthropic", status=503)
    response = post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=FILES)
    assert response.status_code == 529
    assert not sim.requests(provider="bedrock") and not sim.requests(provider="vertex")
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk, status="error").get()
        outcomes = [(a["outcome"], a["reason"]) for a in entry.metadata["attempts"]]
        assert outcomes[0][0] == "failover"
        assert all(o == "skipped" and FILES in r for o, r in outcomes[1:]) and len(outcomes) == 3


def test_a_beta_no_provider_of_the_tenant_accepts_is_a_400(sim: Any, client_a: Any, basic: Any,
                                                            settings: Any) -> None:
    _user, key = basic
    settings.ATRIUM_BETA_PROVIDERS = {FILES: ["nowhere"]}
    response = post_messages(client_a, key, body(), HTTP_ANTHROPIC_BETA=FILES)
    assert response.status_code == 400
    assert FILES in response.json()["error"]["message"]
    assert not sim.requests()


def test_count_tokens_forwards_betas_too(sim: Any, client_a: Any, basic: Any) -> None:
    _user, key = basic
    response = post_count(client_a, key, COUNT, HTTP_ANTHROPIC_BETA=CACHING)
    assert response.status_code == 200, response.content
    assert sim.requests(provider="anthropic")[-1]["betas"] == [CACHING]
    assert post_count(client_a, key, COUNT, HTTP_ANTHROPIC_BETA="nope-2020-01-01").status_code == 400


def test_python_sdk_beta_messages(sim: Any, basic: Any, tenant_a: Any, in_process: Any) -> None:  # noqa: F811
    import anthropic

    _user, key = basic
    client = in_process(tenant_a, key)
    message = client.beta.messages.create(model="claude-sonnet-5-5", max_tokens=64, betas=[CACHING],
                                          messages=[{"role": "user", "content": "Hello, beta"}])
    assert message.content[0].type == "text"
    assert sim.requests(provider="anthropic")[-1]["betas"] == [CACHING]
    with pytest.raises(anthropic.BadRequestError, match="anthropic-beta"):
        client.beta.messages.create(model="claude-sonnet-5-5", max_tokens=64, betas=["nope-2020-01-01"],
                                    messages=[{"role": "user", "content": "Hello"}])
    assert json.loads(json.dumps(message.usage.model_dump()))["input_tokens"] > 0

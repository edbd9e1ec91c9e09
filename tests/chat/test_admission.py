"""One Redis script admits a call: the quota reservation and the circuit breakers of the targets, in order."""

from __future__ import annotations

import time
from typing import Any

import pytest

from config.redis import redis_client
from inference.breaker import breaker_key, breaker_record_failure, breaker_state
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def basic(tenant_a: Any, make_user: Any, api_key_for: Any) -> tuple[Any, str]:
    user = make_user(tenant_a, "basic_user")
    return user, api_key_for(tenant_a, user)


def test_an_open_breaker_is_skipped_at_admission_without_a_call(sim: Any, client_a: Any, basic: Any) -> None:
    breaker_record_failure("anthropic", reason="test", force_open=True)
    response = post_messages(client_a, basic[1], body())
    assert response.status_code == 200, response.content
    assert response.json()["model"] == "claude-sonnet-5-5"
    assert sim.requests("anthropic") == [] and len(sim.requests("bedrock")) == 1
    assert breaker_state("anthropic").state == "open"


def test_a_refused_quota_claims_no_half_open_probe(sim: Any, client_a: Any, basic: Any, tenant_a: Any,
                                                    tenant_update: Any) -> None:
    breaker_record_failure("anthropic", reason="test", force_open=True)
    redis_client().hset(breaker_key("anthropic"), "open_until", time.time() - 1)  # cool-down over: probe due
    tenant_update(tenant_a, tokens_per_day=1)
    refused = post_messages(client_a, basic[1], body())
    assert refused.status_code == 429
    assert redis_client().hget(breaker_key("anthropic"), "state") == b"open"  # no probe lease taken

    tenant_update(tenant_a, tokens_per_day=None)
    admitted = post_messages(client_a, basic[1], body())
    assert admitted.status_code == 200, admitted.content
    assert breaker_state("anthropic").state == "closed"  # this call was the probe, and it succeeded

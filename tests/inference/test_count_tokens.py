"""Token counting through the failover router, in each provider's wire format (issue 15)."""

from __future__ import annotations

import pytest

from inference.counting import route_count_tokens
from inference.errors import ProviderUnavailable, UpstreamRequestError
from inference.simulator import Simulator, content
from inference.types import MessageRequest
from tests.inference.routing import targets

BODY = {"system": "Be brief.", "messages": [{"role": "user", "content": "How many tokens is this sentence?"}],
        "tools": [{"name": "lookup", "description": "Look a word up", "input_schema": {"type": "object"}}]}


def counting(**params: object) -> MessageRequest:
    return MessageRequest(model="sonnet", params={**BODY, **params})


@pytest.mark.parametrize("key", ["anthropic", "bedrock:us-east-1", "vertex:us-east5"])
def test_each_provider_counts_in_its_own_format(sim: Simulator, key: str) -> None:
    result = route_count_tokens(counting(), targets(key))
    assert result.input_tokens == content.input_tokens(dict(BODY))
    assert result.provider == key.partition(":")[0]
    request = sim.requests()[-1]
    if key.startswith("bedrock"):
        assert request["path"].endswith("/count-tokens")
    elif key.startswith("vertex"):
        assert request["path"].endswith("/models/count-tokens:rawPredict")
    else:
        assert request["path"] == "/anthropic/v1/messages/count_tokens"
    assert not any(r["path"].endswith(("/invoke", ":rawPredict", "/v1/messages")) and "count" not in r["path"]
                   for r in sim.requests())  # nothing was generated


def test_count_fails_over_and_counts_against_the_breaker(sim: Simulator) -> None:
    sim.faults.set("anthropic", status=529)
    sim.faults.set("bedrock", "us-east-1", status=503)
    result = route_count_tokens(counting(), targets("anthropic", "bedrock:us-east-1", "vertex:us-east5"))
    assert result.provider == "vertex"
    assert [a.outcome for a in result.attempts] == ["failover", "failover", "ok"]
    assert [a.status for a in result.attempts[:2]] == [529, 503]


def test_count_caller_error_is_returned_not_failed_over(sim: Simulator) -> None:
    with pytest.raises(UpstreamRequestError) as raised:
        route_count_tokens(MessageRequest(model="sonnet", params={"messages": "not a list"}),
                           targets("anthropic", "bedrock:us-east-1"))
    assert raised.value.status == 400
    assert not sim.requests(provider="bedrock")


def test_count_slow_provider_is_abandoned_within_its_budget(sim: Simulator, settings: object) -> None:
    settings.ATRIUM_FIRST_BYTE_TIMEOUTS = {"anthropic": 0.3}  # type: ignore[attr-defined]
    sim.faults.set("anthropic", latency_ms=5000, count=1)
    result = route_count_tokens(counting(), targets("anthropic", "bedrock:us-east-1"))
    assert result.provider == "bedrock"
    assert result.attempts[0].reason == "timeout"
    sim.faults.clear()


def test_every_provider_down_is_unavailable(sim: Simulator) -> None:
    sim.faults.set("anthropic", status=500)
    sim.faults.set("bedrock", "*", status=500)
    with pytest.raises(ProviderUnavailable):
        route_count_tokens(counting(), targets("anthropic", "bedrock:us-east-1"))

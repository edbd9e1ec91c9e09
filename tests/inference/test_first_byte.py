"""Time-to-first-byte budget per attempt, hedging, and what a slow provider does to its breaker."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace
from typing import Any

import pytest

from inference import breaker
from inference.errors import ProviderUnavailable
from inference.router import first_byte_budget, route, route_stream
from inference.simulator import Simulator
from inference.targets import targets_for_tenant
from tests.inference.routing import ask, bname, target

SLOW_MS = 10_000  # the provider answers after 10 s, as in the issue


def test_a_slow_provider_is_abandoned_after_its_budget_and_the_next_one_serves(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", latency_ms=SLOW_MS)
    slow = dataclasses.replace(target("anthropic"), first_byte_timeout_s=0.5)  # the tenant's own budget
    t0 = time.monotonic()
    result = route(ask(), [slow, target("bedrock:us-east-1")])
    elapsed = time.monotonic() - t0
    assert (result.provider, result.region) == ("bedrock", "us-east-1")
    first, second = result.attempts
    assert (first.target, first.outcome, first.reason) == ("anthropic", "failover", "no first byte within 0.5 s")
    assert second.outcome == "ok"
    # Served within the budget plus Bedrock's own time, never after the slow provider's 10 s.
    assert elapsed < SLOW_MS / 1000 / 4
    assert first.latency_ms < SLOW_MS / 4
    assert breaker.breaker_state(bname("anthropic")).failures == 1  # slow is a failure of the provider


def test_the_budget_applies_to_streams_too(sim: Simulator, settings: Any) -> None:
    settings.ATRIUM_FIRST_BYTE_TIMEOUTS = {"vertex": 0.4}
    sim.faults.set("vertex", "*", latency_ms=SLOW_MS)
    stream = route_stream(ask(), [target("vertex:us-east5"), target("anthropic")])
    events = list(stream)
    assert stream.provider == "anthropic" and events[-1]["type"] == "message_stop"
    assert stream.attempts[0].reason == "no first byte within 0.4 s"
    assert stream.first_event_ms is not None and stream.first_event_ms < SLOW_MS / 4


def test_three_slow_answers_open_the_breaker_and_the_fourth_is_not_even_sent(sim: Simulator, settings: Any) -> None:
    settings.ATRIUM_FIRST_BYTE_TIMEOUTS = {"anthropic": 0.3}
    sim.faults.set("anthropic", "", latency_ms=SLOW_MS)
    for _ in range(3):
        assert route(ask(), [target("anthropic"), target("vertex:us-east5")]).provider == "vertex"
    assert breaker.breaker_state(bname("anthropic")).state == "open"
    before = len(sim.requests(provider="anthropic"))
    result = route(ask(), [target("anthropic"), target("vertex:us-east5")])
    assert result.attempts[0].outcome == "skipped" and len(sim.requests(provider="anthropic")) == before


def test_budget_resolution_tenant_then_target_then_provider_then_default(settings: Any) -> None:
    settings.ATRIUM_FIRST_BYTE_TIMEOUT_S = 5.0
    settings.ATRIUM_FIRST_BYTE_TIMEOUTS = {"bedrock": 8.0, "bedrock:eu-west-1": 3.0}
    tenant = SimpleNamespace(provider_order=["anthropic", "bedrock:us-east-1", "bedrock:eu-west-1"], credentials={},
                             first_byte_timeout_s=None)
    assert [first_byte_budget(t) for t in targets_for_tenant(tenant)] == [5.0, 8.0, 3.0]
    tenant.first_byte_timeout_s = 1.5
    assert [first_byte_budget(t) for t in targets_for_tenant(tenant)] == [1.5, 1.5, 1.5]


def test_a_budget_longer_than_the_deadline_still_ends_at_the_deadline(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", latency_ms=SLOW_MS)
    with pytest.raises(ProviderUnavailable) as info:
        route(ask(), [target("anthropic")], deadline_s=0.3)
    assert info.value.deadline_exceeded and info.value.attempts[0].reason == "timeout"


def test_hedging_takes_the_first_answer_and_cancels_the_other(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", latency_ms=SLOW_MS)  # far beyond the 0.1 s hedge, however loaded the machine
    result = route(ask("hedge me"), [target("anthropic"), target("bedrock:us-east-1")], hedge_delay_s=0.1)
    assert result.provider == "bedrock"
    outcomes = [(a.target, a.outcome) for a in result.attempts]
    assert outcomes == [("anthropic", "cancelled"), ("bedrock:us-east-1", "ok")]
    # Beaten is not broken: the slower provider's breaker is untouched.
    assert breaker.breaker_state(bname("anthropic")).failures == 0
    # Both were asked; the loser's answer arrives later and is thrown away (its connection closed).
    assert len(sim.requests(provider="anthropic")) == 1 and len(sim.requests(provider="bedrock")) == 1


def test_hedging_keeps_the_primary_when_it_answers_before_the_delay(sim: Simulator) -> None:
    result = route(ask(), [target("anthropic"), target("bedrock:us-east-1")], hedge_delay_s=2.0)
    assert result.provider == "anthropic" and [a.outcome for a in result.attempts] == ["ok"]
    assert sim.requests(provider="bedrock") == []


def test_a_non_streaming_call_whose_stream_breaks_fails_over(sim: Simulator) -> None:
    """Nothing reached the caller yet, so a provider stream broken half way is just a failed attempt."""
    sim.faults.set("anthropic", "", error_after_events=3)
    result = route(ask(), [target("anthropic"), target("vertex:us-east5")])
    assert result.provider == "vertex" and result.message["stop_reason"] in ("end_turn", "max_tokens")
    assert result.attempts[0].outcome == "failover" and "stream error" in result.attempts[0].reason


def test_non_streaming_answer_is_the_providers_message(sim: Simulator) -> None:
    """The call goes upstream as a stream; the Message handed back is what the provider's JSON answer is."""
    from inference.providers.base import provider_client, provider_create

    request = ask("same question")
    routed = route(request, [target("anthropic")]).message
    direct = provider_create(provider_client(target("anthropic")), model_id="claude-sonnet-5-5",
                             params=request.params, timeout=10)
    assert {k: v for k, v in routed.items() if k != "id"} == {k: v for k, v in direct.items() if k != "id"}

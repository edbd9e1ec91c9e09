"""Failover across Anthropic, Bedrock regions and Vertex against the provider simulator."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from inference import breaker
from inference.errors import ModelNotFound, ProviderUnavailable, UpstreamRequestError
from inference.router import route, route_stream
from inference.simulator import Simulator
from tests.conftest import subprocess_env
from tests.inference.routing import ask, bname, target, targets

ORDER = ("anthropic", "bedrock:us-east-1", "bedrock:us-west-2", "vertex:us-east5")


def seen(sim: Simulator, provider: str, region: str = "") -> int:
    return len(sim.requests(provider=provider, region=region))


def text_of(message: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in message["content"] if block.get("type") == "text")


def test_primary_answers_with_the_tier_mapped_to_its_id(sim: Simulator) -> None:
    result = route(ask(model="sonnet"), targets(*ORDER))
    assert (result.provider, result.region, result.model_id) == ("anthropic", "", "claude-sonnet-5-5")
    assert [a.outcome for a in result.attempts] == ["ok"]
    assert result.message["type"] == "message" and text_of(result.message)
    assert result.input_tokens > 0 and 0 < result.output_tokens <= 64
    assert seen(sim, "bedrock", "us-east-1") == 0


@pytest.mark.parametrize("provider_key", ["anthropic", "bedrock:eu-west-1", "vertex:europe-west1"])
def test_each_provider_answers_through_its_sdk_client(sim: Simulator, provider_key: str) -> None:
    result = route(ask(model="haiku"), targets(provider_key))
    expected = {"anthropic": "claude-haiku-5-5", "bedrock": "global.anthropic.claude-haiku-5-5-v1:0",
                "vertex": "claude-haiku-5-5"}[provider_key.partition(":")[0]]
    assert result.model_id == expected
    assert text_of(result.message)


def test_bedrock_region_one_503_fails_over_to_region_two(sim: Simulator) -> None:
    sim.faults.set("bedrock", "us-east-1", status=503)
    result = route(ask(), targets("bedrock:us-east-1", "bedrock:us-west-2", "vertex:us-east5"))
    assert (result.provider, result.region) == ("bedrock", "us-west-2")
    first, second = result.attempts
    assert (first.target, first.outcome, first.status) == ("bedrock:us-east-1", "failover", 503)
    assert (second.target, second.outcome) == ("bedrock:us-west-2", "ok")
    assert seen(sim, "bedrock", "us-east-1") == 1 and seen(sim, "vertex", "us-east5") == 0


def test_all_bedrock_down_vertex_answers(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", status=529)
    sim.faults.set("bedrock", "*", status=500)
    result = route(ask(), targets(*ORDER))
    assert result.provider == "vertex"
    assert [a.outcome for a in result.attempts] == ["failover", "failover", "failover", "ok"]
    assert [a.status for a in result.attempts[:3]] == [529, 500, 500]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 529])
def test_provider_errors_fail_over_and_count_against_the_breaker(sim: Simulator, status: int) -> None:
    sim.faults.set("anthropic", "", status=status)
    result = route(ask(), targets("anthropic", "vertex:us-east5"))
    assert result.provider == "vertex" and result.attempts[0].status == status
    assert breaker.breaker_state(bname("anthropic")).failures == 1


@pytest.mark.parametrize("status", [401, 403, 404])
def test_misconfiguration_fails_over_without_touching_the_shared_breaker(sim: Simulator, status: int) -> None:
    sim.faults.set("bedrock", "us-east-1", status=status)
    result = route(ask(), targets("bedrock:us-east-1", "anthropic"))
    assert result.provider == "anthropic" and result.attempts[0].status == status
    # The platform's breaker (shared by every tenant on the platform's credentials) is untouched; a refused
    # credential (401/403) counts against its own scope's breaker only, a missing model (404) against none.
    assert breaker.breaker_state("bedrock:us-east-1").failures == 0
    assert breaker.breaker_state(bname("bedrock:us-east-1")).failures == (0 if status == 404 else 1)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_caller_errors_do_not_fail_over(sim: Simulator, status: int) -> None:
    sim.faults.set("anthropic", "", status=status)
    with pytest.raises(UpstreamRequestError) as info:
        route(ask(), targets("anthropic", "bedrock:us-east-1"))
    assert info.value.status == status
    assert seen(sim, "bedrock", "us-east-1") == 0
    assert [a.outcome for a in info.value.attempts] == ["error"]


def test_a_real_bad_request_returns_the_providers_message(sim: Simulator) -> None:
    bad = ask()
    bad = type(bad)(model="sonnet", params={"max_tokens": 10, "messages": []})
    with pytest.raises(UpstreamRequestError) as info:
        route(bad, targets("anthropic", "vertex:us-east5"))
    assert info.value.status == 400 and info.value.error_type == "invalid_request_error"
    assert "messages" in info.value.message
    assert seen(sim, "vertex", "us-east5") == 0


def test_dropped_connection_fails_over(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", drop=True)
    result = route(ask(), targets("anthropic", "bedrock:us-east-1"))
    assert result.provider == "bedrock"
    assert result.attempts[0].reason.startswith("connection error")


@pytest.mark.parametrize("target", ["vertex:us-east5", "anthropic"])  # the SDK's transport and the direct one
def test_hang_times_out_within_the_deadline_and_fails_over(sim: Simulator, settings: Any, target: str) -> None:
    provider, _, region = target.partition(":")
    sim.faults.set(provider, region, hang=True)
    with pytest.raises(ProviderUnavailable) as info:
        route(ask(), targets(target), deadline_s=0.5)
    assert info.value.attempts[0].reason == "timeout"
    assert f"{target}: timeout" in info.value.message


def test_added_latency_is_survivable(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", latency_ms=50)
    result = route(ask(), targets("anthropic"))
    assert result.provider == "anthropic" and result.attempts[0].latency_ms >= 50


def test_all_failing_raises_provider_unavailable_with_every_reason(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", status=500)
    sim.faults.set("bedrock", "*", status=429)
    sim.faults.set("vertex", "*", drop=True)
    with pytest.raises(ProviderUnavailable) as info:
        route(ask(), targets(*ORDER))
    reasons = {a.target: a.reason for a in info.value.attempts}
    assert reasons["anthropic"].startswith("HTTP 500")
    assert reasons["bedrock:us-west-2"].startswith("HTTP 429")
    assert reasons["vertex:us-east5"].startswith("connection error")
    assert info.value.status == 529


def test_missing_credentials_are_misconfigured_not_a_crash(sim: Simulator) -> None:
    broken = [target("anthropic", api_key=""), target("bedrock:us-east-1", mode="keys", access_key="", secret_key=""),
              target("vertex:us-east5", mode="service_account", service_account_json="{not json")]
    with pytest.raises(ProviderUnavailable) as info:
        route(ask(), broken)
    assert all(a.reason.startswith("misconfigured") for a in info.value.attempts)
    assert sim.requests() == []
    result = route(ask(), [*broken, target("bedrock:us-west-2")])
    assert result.region == "us-west-2"


def test_unknown_model_is_not_found(sim: Simulator) -> None:
    with pytest.raises(ModelNotFound):
        route(ask(model="claude-nonexistent-1"), targets(*ORDER))


def test_open_breaker_skips_the_target_without_calling_it(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", status=503)
    for _ in range(3):
        route(ask(), targets("anthropic", "vertex:us-east5"))
    assert breaker.breaker_state(bname("anthropic")).state == "open"
    sim.reset_requests()
    sim.faults.clear()
    result = route(ask(), targets("anthropic", "vertex:us-east5"))
    assert result.provider == "vertex"
    assert (result.attempts[0].outcome, result.attempts[0].reason) == ("skipped", "circuit open")
    assert seen(sim, "anthropic") == 0


def test_half_open_probe_closes_the_breaker_on_success(sim: Simulator, settings: Any) -> None:
    settings.ATRIUM_BREAKER_COOLDOWN_S = 0.0
    breaker.breaker_record_failure(bname("anthropic"), force_open=True)
    assert breaker.breaker_allow(bname("anthropic")) == breaker.PROBE
    assert breaker.breaker_allow(bname("anthropic")) == breaker.SKIP  # one probe at a time
    breaker.breaker_record_success(bname("anthropic"))
    assert breaker.breaker_state(bname("anthropic")).state == "closed"
    result = route(ask(), targets("anthropic"))
    assert result.provider == "anthropic"


def test_failed_probe_reopens(sim: Simulator, settings: Any) -> None:
    settings.ATRIUM_BREAKER_COOLDOWN_S = 0.0
    breaker.breaker_record_failure(bname("anthropic"), force_open=True)
    sim.faults.set("anthropic", "", status=500)
    result = route(ask(), targets("anthropic", "bedrock:us-east-1"))
    assert result.provider == "bedrock"
    state = breaker.breaker_state(bname("anthropic"))
    assert state.failures == 2 and state.last_reason.startswith("HTTP 500")


def test_a_second_process_sees_the_breaker_the_first_opened(sim: Simulator) -> None:
    env = subprocess_env()
    breaker.breaker_record_failure("bedrock:eu-west-1", reason="test", force_open=True)
    code = ("import django; django.setup(); from inference import breaker; "
            "print(breaker.breaker_allow('bedrock:eu-west-1'), breaker.breaker_allow('bedrock:eu-central-1'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(breaker.SKIP), str(breaker.ALLOW_CLEAN)]
    # and the other way round: the subprocess opens one, this process skips it.
    code = ("import django; django.setup(); from inference import breaker; "
            f"breaker.breaker_record_failure('{bname('vertex:us-east5')}', reason='other process', force_open=True)")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    result = route(ask(), targets("vertex:us-east5", "anthropic"))
    assert result.provider == "anthropic" and seen(sim, "vertex", "us-east5") == 0


# --- streaming ---------------------------------------------------------------------------------------


def test_stream_relays_every_event_and_accumulates_the_message(sim: Simulator) -> None:
    stream = route_stream(ask("Tell me a story"), targets("bedrock:us-east-1"))
    events = list(stream)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    deltas = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text_of(stream.message) == deltas and deltas
    assert stream.message["stop_reason"] in ("end_turn", "max_tokens")
    assert stream.output_tokens > 0 and not stream.incomplete


def test_stream_error_before_first_byte_fails_over(sim: Simulator) -> None:
    sim.faults.set("anthropic", "", error_after_events=0)
    stream = route_stream(ask(), targets("anthropic", "vertex:us-east5"))
    assert stream.provider == "vertex"
    assert [e["type"] for e in stream][-1] == "message_stop"
    assert stream.attempts[0].outcome == "failover"


def test_stream_status_error_fails_over(sim: Simulator) -> None:
    sim.faults.set("vertex", "us-east5", status=529)
    stream = route_stream(ask(), targets("vertex:us-east5", "bedrock:us-west-2"))
    assert (stream.provider, stream.region) == ("bedrock", "us-west-2")
    assert list(stream)[-1]["type"] == "message_stop"


@pytest.mark.parametrize("provider_key", ["anthropic", "bedrock:us-east-1", "vertex:us-east5"])
def test_stream_error_after_first_byte_ends_with_an_error_event(sim: Simulator, provider_key: str) -> None:
    provider, _, region = provider_key.partition(":")
    sim.faults.set(provider, region, error_after_events=3)
    stream = route_stream(ask("A long answer please", max_tokens=200), targets(provider_key, "anthropic"))
    events = list(stream)
    assert stream.provider == provider  # no failover after the first byte
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] in ("overloaded_error", "api_error")
    assert stream.incomplete and stream.message["content"] is not None
    assert "message_stop" not in [e["type"] for e in events]
    if provider != "anthropic":
        assert seen(sim, "anthropic") == 0


def test_closing_a_stream_early_marks_it_incomplete(sim: Simulator) -> None:
    stream = route_stream(ask("stop me", max_tokens=200), targets("anthropic"))
    iterator = iter(stream)
    next(iterator)
    iterator.close()  # type: ignore[attr-defined]
    assert stream.incomplete


def test_vertex_base_url_region_placeholder_is_substituted(sim: Simulator, settings: Any) -> None:
    settings.ATRIUM_VERTEX_BASE_URL = f"{sim.url}/vertex/{{region}}/v1"
    for region in ("europe-west1", "us-east5"):
        result = route(ask(), targets(f"vertex:{region}"))
        assert (result.provider, result.region) == ("vertex", region)
    paths = [r["path"] for r in sim.requests(provider="vertex")]
    assert paths[0].startswith("/vertex/europe-west1/v1/projects/atrium-test/locations/europe-west1/")
    assert paths[1].startswith("/vertex/us-east5/v1/") and "%7B" not in "".join(paths)

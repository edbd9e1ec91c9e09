"""Wire fidelity of the provider simulator: the official SDK clients work against it unchanged."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from inference.simulator import Simulator
from inference.simulator.eventstream import chunk_event, exception_event

ASK = {"max_tokens": 200, "messages": [{"role": "user", "content": "What is a circuit breaker?"}]}


@pytest.fixture(scope="module")
def sdk_sim() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture
def fresh(sdk_sim: Simulator) -> Iterator[Simulator]:
    sdk_sim.faults.clear()
    sdk_sim.reset_requests()
    yield sdk_sim
    sdk_sim.faults.clear()


def direct(sim: Simulator, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{sim.url}/anthropic", api_key="sk-ant-x", max_retries=0, **kw)


def bedrock(sim: Simulator, region: str = "eu-west-1", **kw: Any) -> anthropic.AnthropicBedrock:
    creds = {"aws_access_key": "AKIAEXAMPLEEXAMPLE00", "aws_secret_key": "secret", **kw}
    return anthropic.AnthropicBedrock(aws_region=region, base_url=f"{sim.url}/bedrock/{region}", max_retries=0,
                                      **creds)


def vertex(sim: Simulator, region: str = "us-east5", **kw: Any) -> anthropic.AnthropicVertex:
    kw.setdefault("access_token", "ya29.token")
    return anthropic.AnthropicVertex(region=region, project_id="proj", base_url=f"{sim.url}/vertex/v1",
                                     max_retries=0, **kw)


CLIENTS = {
    "anthropic": (direct, "claude-sonnet-5-5"),
    "bedrock": (bedrock, "global.anthropic.claude-sonnet-5-5-v1:0"),
    "vertex": (vertex, "claude-sonnet-5-5"),
}


@pytest.mark.parametrize("provider", list(CLIENTS))
def test_json_message_through_the_sdk(fresh: Simulator, provider: str) -> None:
    make, model = CLIENTS[provider]
    message = make(fresh).messages.create(model=model, **ASK)
    assert isinstance(message, anthropic.types.Message)
    assert message.model == model and message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and "circuit breaker" in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert [r["provider"] for r in fresh.requests()] == [provider]


@pytest.mark.parametrize("provider", list(CLIENTS))
def test_streaming_through_the_sdk_helper(fresh: Simulator, provider: str) -> None:
    make, model = CLIENTS[provider]
    with make(fresh).messages.stream(model=model, **ASK) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) > 3
    assert "".join(deltas) == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 1
    assert fresh.requests()[0]["stream"] is True


def test_every_sse_event_type_is_sent(fresh: Simulator) -> None:
    response = httpx.post(f"{fresh.url}/anthropic/v1/messages", headers={"x-api-key": "k"},
                          json={"model": "claude-haiku-5-5", "stream": True, **ASK})
    kinds = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert {"content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert kinds[-1] == "message_stop"
    fresh.faults.set("anthropic", "", error_after_events=2)
    broken = httpx.post(f"{fresh.url}/anthropic/v1/messages", headers={"x-api-key": "k"},
                        json={"model": "claude-haiku-5-5", "stream": True, **ASK})
    assert [line[7:] for line in broken.text.splitlines() if line.startswith("event: ")][-1] == "error"


def test_models_list(fresh: Simulator) -> None:
    ids = [m.id for m in direct(fresh).models.list()]
    assert ids == ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"]


def test_answers_are_deterministic_and_respect_max_tokens(fresh: Simulator) -> None:
    client = direct(fresh)
    first = client.messages.create(model="claude-opus-5-5", **ASK)
    again = client.messages.create(model="claude-opus-5-5", **ASK)
    other = client.messages.create(model="claude-opus-5-5", max_tokens=200,
                                   messages=[{"role": "user", "content": "Something else"}])
    assert first.content[0].text == again.content[0].text != other.content[0].text  # type: ignore[union-attr]
    short = client.messages.create(model="claude-opus-5-5", max_tokens=1, messages=ASK["messages"])
    assert short.usage.output_tokens == 1 and short.stop_reason == "max_tokens"


@pytest.mark.parametrize(("status", "exc"), [
    (400, anthropic.BadRequestError), (401, anthropic.AuthenticationError), (403, anthropic.PermissionDeniedError),
    (404, anthropic.NotFoundError), (429, anthropic.RateLimitError), (500, anthropic.InternalServerError),
    (503, anthropic.InternalServerError), (529, anthropic.APIStatusError),
])
@pytest.mark.parametrize("provider", list(CLIENTS))
def test_status_faults_raise_the_sdk_exception(fresh: Simulator, provider: str, status: int, exc: type) -> None:
    make, model = CLIENTS[provider]
    fresh.faults.set(provider, "" if provider == "anthropic" else "*", status=status)
    with pytest.raises(exc) as info:
        make(fresh).messages.create(model=model, **ASK)
    assert info.value.status_code == status  # type: ignore[attr-defined]
    if status == 429:
        assert info.value.response.headers["retry-after"] == "1"  # type: ignore[attr-defined]


def test_bedrock_errors_are_aws_shaped(fresh: Simulator) -> None:
    fresh.faults.set("bedrock", "eu-west-1", status=429)
    with pytest.raises(anthropic.RateLimitError) as info:
        bedrock(fresh).messages.create(model="anthropic.claude-haiku-5-5-v1:0", **ASK)
    assert info.value.response.headers["x-amzn-ErrorType"].startswith("ThrottlingException")
    assert info.value.body == {"message": "Rate limited (injected)."}


def test_drop_and_hang(fresh: Simulator) -> None:
    fresh.faults.set("anthropic", "", drop=True)
    with pytest.raises(anthropic.APIConnectionError):
        direct(fresh).messages.create(model="claude-haiku-5-5", **ASK)
    fresh.faults.set("vertex", "us-east5", hang=True)
    with pytest.raises(anthropic.APITimeoutError):
        vertex(fresh, timeout=0.3).messages.create(model="claude-haiku-5-5", **ASK)


@pytest.mark.parametrize("provider", list(CLIENTS))
def test_error_after_n_events_raises_while_iterating(fresh: Simulator, provider: str) -> None:
    make, model = CLIENTS[provider]
    fresh.faults.set(provider, "" if provider == "anthropic" else "*", error_after_events=3)
    received = []
    with pytest.raises(anthropic.APIStatusError) as info:  # noqa: PT012 - events arrive before the error
        for event in make(fresh).messages.create(model=model, stream=True, **ASK):
            received.append(event.type)
    assert received and received[0] == "message_start" and "message_stop" not in received
    assert info.value.body["error"]["type"] in ("overloaded_error", "serviceUnavailableException")  # type: ignore[index]


def test_faults_are_scoped_to_their_region_and_counted(fresh: Simulator) -> None:
    fresh.faults.set("bedrock", "us-east-1", status=503, count=2)
    other = bedrock(fresh, "us-west-2").messages.create(model="anthropic.claude-haiku-5-5-v1:0", **ASK)
    assert other.content
    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError):
            bedrock(fresh, "us-east-1").messages.create(model="anthropic.claude-haiku-5-5-v1:0", **ASK)
    assert bedrock(fresh, "us-east-1").messages.create(model="anthropic.claude-haiku-5-5-v1:0", **ASK).content
    assert fresh.faults.list() == []


def test_http_control_endpoint(fresh: Simulator) -> None:
    created = httpx.post(f"{fresh.url}/_sim/faults", json={"provider": "vertex", "region": "europe-west1",
                                                           "status": 500, "latency_ms": 10})
    assert created.status_code == 200
    assert httpx.get(f"{fresh.url}/_sim/faults").json()["faults"][0]["status"] == 500
    with pytest.raises(anthropic.InternalServerError):
        vertex(fresh, "europe-west1").messages.create(model="claude-haiku-5-5", **ASK)
    seen = httpx.get(f"{fresh.url}/_sim/requests").json()["requests"]
    assert [(r["provider"], r["region"]) for r in seen] == [("vertex", "europe-west1")]
    assert httpx.delete(f"{fresh.url}/_sim/faults").json() == {"faults": []}
    assert httpx.post(f"{fresh.url}/_sim/faults", json={"provider": "nope"}).status_code == 400


def test_requests_are_validated_like_the_real_api(fresh: Simulator) -> None:
    client = direct(fresh)
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client.messages.create(model="claude-haiku-5-5", messages=ASK["messages"], max_tokens=0)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="gpt-4o", **ASK)
    unauthenticated = httpx.post(f"{fresh.url}/anthropic/v1/messages", json={"model": "claude-haiku-5-5", **ASK})
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["type"] == "authentication_error"
    unsigned = httpx.post(f"{fresh.url}/bedrock/us-east-1/model/anthropic.claude-haiku-5-5-v1:0/invoke", json=ASK)
    assert unsigned.status_code == 403 and unsigned.json() == {"message": "Missing Authentication Token"}


def test_event_stream_frames_decode_with_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(chunk_event({"type": "ping"}) + exception_event("throttlingException", "slow down"))
    first, second = list(buffer)
    assert first.headers[":event-type"] == "chunk"
    assert json.loads(base64.b64decode(json.loads(first.payload)["bytes"])) == {"type": "ping"}
    assert second.headers[":message-type"] == "exception"
    assert json.loads(second.payload) == {"message": "slow down"}
    corrupted = bytearray(chunk_event({"type": "ping"}))
    corrupted[-1] ^= 0xFF
    bad = EventStreamBuffer()
    bad.add_data(bytes(corrupted))
    with pytest.raises(ChecksumMismatch):
        list(bad)


def test_bedrock_session_token_and_assumed_role(fresh: Simulator, settings: Any, db: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from inference.providers.bedrock import assume_role
    from inference.router import route
    from inference.targets import parse_target
    from inference.types import MessageRequest

    bedrock(fresh, aws_session_token="FwoGZXIvYXdzEJr").messages.create(
        model="anthropic.claude-haiku-5-5-v1:0", **ASK)
    assert fresh.requests(provider="bedrock")[-1]["credential"] == "AKIAEXAMPLEEXAMPLE00+session"
    settings.ATRIUM_STS_ENDPOINT_URL = f"{fresh.url}/sts/"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIADEFAULTCHAIN0000")  # the default chain's identity
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "default-secret")
    keys = assume_role("arn:aws:iam::123456789012:role/atrium", "us-east-1")
    assert keys["aws_access_key"].startswith("ASIASIMULATED") and keys["aws_session_token"]
    assert assume_role("arn:aws:iam::123456789012:role/atrium", "us-east-1") == keys  # cached until expiry
    # Through the router: a tenant configured with a base key pair and a role signs with the role's keys.
    settings.ATRIUM_BEDROCK_BASE_URL = f"{fresh.url}/bedrock/{{region}}"
    target = parse_target("bedrock:eu-central-1", {"mode": "assume_role", "role_arn": "arn:aws:iam::1:role/r",
                                                    "access_key": "AKIABASEBASEBASEBASE", "secret_key": "s"})
    route(MessageRequest(model="haiku", params=ASK), [target])
    assert fresh.requests(provider="bedrock")[-1]["credential"].startswith("ASIASIMULATED")
    assert fresh.requests(provider="bedrock")[-1]["credential"].endswith("+session")


def test_vertex_service_account_token_exchange(fresh: Simulator) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "proj", "private_key_id": "k1", "private_key": pem,
            "client_email": "atrium@proj.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": f"{fresh.url}/google/token"}
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    client = vertex(fresh, access_token=None, credentials=creds)
    assert client.messages.create(model="claude-haiku-5-5", **ASK).content
    assert fresh.requests(provider="google")
    assert fresh.requests(provider="vertex")[-1]["credential"].startswith("ya29.simulated-")

"""Warm clients: built when a process starts, credentials renewed before they expire, never a quiet failover
because an STS session or a Google token ran out (issue 15)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from inference.providers.base import provider_client, provider_clients_cached, provider_clients_due
from inference.router import route
from inference.simulator import Simulator
from inference.targets import parse_target
from inference.types import ProviderTarget
from inference.warm import clients_warm, refresh_pass, warm_start, warm_stop, warm_targets
from tests.inference.routing import ask, target

ROLE = "arn:aws:iam::210987654321:role/atrium-warm"


@pytest.fixture
def sts(sim: Simulator, settings: Any) -> Iterator[Simulator]:
    from inference.providers import bedrock

    settings.ATRIUM_STS_ENDPOINT_URL = f"{sim.url}/sts/"
    settings.ATRIUM_CREDENTIAL_REFRESH_AHEAD_S = 300.0
    bedrock._assumed.clear()
    yield sim
    sim.sts_session_s = None
    sim.google_token_s = 3600
    bedrock._assumed.clear()


def role_target(region: str = "us-east-1") -> ProviderTarget:
    return parse_target(f"bedrock:{region}", {"mode": "assume_role", "role_arn": ROLE,
                                               "access_key": "AKIABASEWARMTEST0000", "secret_key": "base-secret"})


def signed_with(sim: Simulator) -> str:
    return str(sim.requests(provider="bedrock")[-1]["credential"]).removesuffix("+session")


def service_account_target(sim: Simulator) -> ProviderTarget:
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "warm-proj", "private_key_id": "k1", "private_key": pem,
            "client_email": "atrium@warm-proj.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": f"{sim.url}/google/token"}
    return parse_target("vertex:us-east5", {"mode": "service_account", "service_account_json": json.dumps(info)})


def test_assumed_role_session_renewed_before_it_expires(sts: Simulator) -> None:
    sts.sts_session_s = 600  # renewal due 300 s before the end
    role = role_target()
    assert route(ask(), [role]).provider == "bedrock"
    first = signed_with(sts)
    assert first.startswith("ASIASIMULATED")
    assert [key for key, _left in provider_clients_due(400)] == [role.key]
    assert refresh_pass(horizon_s=400) == 1
    assert not sts.expired(first)  # renewed ahead: the old session was still valid
    assert len(sts.requests(provider="sts")) == 2
    assert route(ask(), [role]).provider == "bedrock"
    assert signed_with(sts) not in ("", first)
    assert refresh_pass(horizon_s=60) == 0  # the new session is not due yet


def test_no_quiet_failover_after_the_session_expired(sts: Simulator) -> None:
    sts.sts_session_s = 2
    role, fallback = role_target(), target("vertex:us-east5")
    assert route(ask(), [role, fallback]).provider == "bedrock"
    old_client, first = provider_client(role), signed_with(sts)
    while not sts.expired(first):  # no refresher thread here: the session simply runs out
        time.sleep(0.1)
    # The simulator refuses the expired session, as AWS does: a client that kept it would fail over.
    with pytest.raises(anthropic.PermissionDeniedError, match="expired"):
        old_client.messages.create(model="anthropic.claude-haiku-5-5-v1:0", **ask().params)
    result = route(ask(), [role, fallback])
    assert result.provider == "bedrock"
    assert [a.outcome for a in result.attempts] == ["ok"]
    assert signed_with(sts) != first
    assert not sts.requests(provider="vertex")


def test_google_token_renewed_before_it_expires(sts: Simulator) -> None:
    sts.google_token_s = 400  # renewal due half way (200 s), before google-auth itself would refresh
    vertex = service_account_target(sts)
    assert route(ask(), [vertex]).provider == "vertex"
    assert len(sts.requests(provider="google")) == 1  # fetched when the client was built
    token = sts.requests(provider="vertex")[-1]["credential"]
    assert refresh_pass(horizon_s=300) == 1
    assert len(sts.requests(provider="google")) == 2
    assert route(ask(), [vertex]).provider == "vertex"
    assert sts.requests(provider="vertex")[-1]["credential"] != token


def test_warm_builds_every_target_client_before_any_request(sts: Simulator, settings: Any,
                                                            tenants: dict[str, Any]) -> None:
    settings.ATRIUM_PROVIDER_ORDER = ["bedrock:us-west-2", "vertex:us-east5"]
    settings.ATRIUM_VERTEX_ACCESS_TOKEN = "ya29.platform"
    settings.ATRIUM_VERTEX_PROJECT_ID = "platform-proj"
    outcome = clients_warm([*warm_targets(), role_target("eu-west-1")])
    assert outcome["vertex:us-east5"] == "ok"
    assert outcome[role_target("eu-west-1").breaker_name] == "ok"
    cached = {t.breaker_name for t in provider_clients_cached()}
    assert {"vertex:us-east5", role_target("eu-west-1").breaker_name} <= cached
    assert len(sts.requests(provider="sts")) == 1  # the role's session was taken at warm-up
    assert not sts.requests(provider="bedrock")  # nothing was sent to a provider
    route(ask(), [role_target("eu-west-1")])
    assert len(sts.requests(provider="sts")) == 1  # the request built nothing


def test_refresher_thread_renews_sessions_with_no_traffic(sts: Simulator, settings: Any) -> None:
    settings.ATRIUM_WARM_CLIENTS = True
    settings.ATRIUM_CLIENT_REFRESH_INTERVAL_S = 0.2
    settings.ATRIUM_PROVIDER_ORDER = []
    sts.sts_session_s = 3
    clients_warm([role_target()])
    thread = warm_start()
    assert thread is not None
    try:
        for _ in range(300):
            if len(sts.requests(provider="sts")) >= 3:
                break
            time.sleep(0.1)
    finally:
        warm_stop()
        thread.join(timeout=30)
    sessions = [r["credential"] for r in sts.requests(provider="sts")]
    assert len(sessions) >= 3  # renewed again and again, with no request made
    assert route(ask(), [role_target()]).provider == "bedrock"

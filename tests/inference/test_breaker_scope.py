"""Breakers per provider, region and credential scope: one tenant's account trouble is its own."""

from __future__ import annotations

from typing import Any

from inference import breaker
from inference.health import provider_health_check_all
from inference.router import route
from inference.simulator import Simulator
from inference.targets import credential_scope, parse_target, targets_for_tenant
from tests.inference.routing import CREDENTIALS, ask

TENANT_KEY = {"api_key": "sk-ant-tenant-own-key"}


def test_scopes_name_the_account_not_the_secret() -> None:
    assert credential_scope("anthropic", {}) == "platform"
    assert credential_scope("bedrock", {"mode": "default"}) == "platform"
    role = {"mode": "assume_role", "role_arn": "arn:aws:iam::123456789012:role/atrium", "external_id": "t1"}
    assert credential_scope("bedrock", role) == "aws:123456789012"
    # Two tenants assuming roles in the same account share that account's limits, hence its breaker.
    assert credential_scope("bedrock", {**role, "external_id": "t2"}) == "aws:123456789012"
    vertex = {"mode": "access_token", "access_token": "ya29.x", "project_id": "p1"}
    assert credential_scope("vertex", vertex) == "gcp:p1"
    scope = credential_scope("anthropic", TENANT_KEY)
    assert scope.startswith("key:") and "sk-ant" not in scope
    assert parse_target("anthropic", dict(TENANT_KEY)).breaker_name == f"anthropic@{scope}"
    assert parse_target("anthropic").breaker_name == "anthropic"


def test_a_tenants_own_rate_limit_opens_only_its_scope(sim: Simulator, monkeypatch: Any) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", CREDENTIALS["anthropic"]["api_key"])
    own = parse_target("anthropic", dict(TENANT_KEY))
    platform = parse_target("anthropic")
    fallback = parse_target("vertex:us-east5", dict(CREDENTIALS["vertex"]))
    sim.faults.set("anthropic", "", status=429, count=3)  # the tenant's account is rate limited
    for _ in range(3):
        assert route(ask(), [own, fallback]).provider == "vertex"
    assert breaker.breaker_state(own.breaker_name).state == "open"
    assert breaker.breaker_state(platform.breaker_name).state == "closed"
    # Every other tenant (on the platform's key) still reaches Anthropic; the limited tenant skips it.
    assert route(ask(), [platform, fallback]).provider == "anthropic"
    skipped = route(ask(), [own, fallback])
    assert skipped.attempts[0].reason == "circuit open" and skipped.provider == "vertex"


def test_a_tenants_refused_key_opens_only_its_scope(sim: Simulator) -> None:
    own = parse_target("bedrock:us-east-1", {"mode": "keys", "access_key": "AKIATENANT", "secret_key": "x"})
    fallback = parse_target("anthropic", dict(CREDENTIALS["anthropic"]))
    sim.faults.set("bedrock", "us-east-1", status=403, count=3)
    for _ in range(3):
        route(ask(), [own, fallback])
    assert breaker.breaker_state(own.breaker_name).state == "open"
    assert breaker.breaker_state("bedrock:us-east-1").failures == 0


def test_a_tenants_targets_carry_their_scope(sim: Simulator) -> None:
    tenant = type("T", (), {"provider_order": ["anthropic", "vertex:us-east5"],
                            "credentials": {"anthropic": dict(TENANT_KEY)}, "first_byte_timeout_s": None})()
    own, platform_vertex = targets_for_tenant(tenant)
    assert own.breaker_name.startswith("anthropic@key:") and platform_vertex.breaker_name == "vertex:us-east5"


def test_health_checks_use_platform_credentials_only(sim: Simulator, monkeypatch: Any, settings: Any,
                                                     tenant_a: Any) -> None:
    from tenants.models import Tenant

    settings.ATRIUM_PROVIDER_ORDER = ["anthropic"]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-platform")
    Tenant.objects.filter(pk=tenant_a.pk).update(provider_order=["anthropic", "bedrock:eu-west-1"])
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    tenant.credentials = {"anthropic": dict(TENANT_KEY)}
    tenant.save(update_fields=["credentials"])
    sim.faults.set("anthropic", "", status=429)
    results = provider_health_check_all()
    assert {r.target for r in results} == {"anthropic", "bedrock:eu-west-1"}
    assert {r.credentials_source for r in results} == {"environment"}
    assert {r["credential"] for r in sim.requests(provider="anthropic")} == {"sk-ant-platf"}
    # The failed check opened the platform's breaker, not the tenant's own scope.
    assert breaker.breaker_state("anthropic").state == "open"
    assert breaker.breaker_state(parse_target("anthropic", dict(TENANT_KEY)).breaker_name).state == "closed"

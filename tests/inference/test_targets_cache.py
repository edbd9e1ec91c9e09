"""targets_for_tenant keeps the targets it built on the tenant object: any change of what they were built from
(credentials, even in place; provider order; first-byte budget; ExternalId; the platform's order) is seen by the
very next call."""

from __future__ import annotations

from typing import Any

from inference.targets import targets_for_tenant
from tenants.models import Tenant


def described(tenant: Tenant) -> list[tuple[str, str, str, Any, Any]]:
    return [(t.provider, t.region, t.scope, t.first_byte_timeout_s, dict(t.credentials))
            for t in targets_for_tenant(tenant)]


def test_every_change_is_seen_by_the_next_call(settings: Any) -> None:
    settings.ATRIUM_PROVIDER_ORDER = ["anthropic"]
    tenant = Tenant(schema_name="t_cache", provider_order=["anthropic", "bedrock:eu-west-1"],
                    credentials={"anthropic": {"api_key": "sk-ant-one"}}, bedrock_external_id="ext-1")
    first = described(tenant)
    assert first == described(tenant)
    assert first[0][4] == {"api_key": "sk-ant-one"}
    assert first[1][4] == {"external_id": "ext-1"}

    tenant.credentials["anthropic"]["api_key"] = "sk-ant-two"  # in place, nested
    assert described(tenant)[0][4] == {"api_key": "sk-ant-two"}
    assert described(tenant)[0][2] != first[0][2]  # its own breaker scope

    tenant.credentials["bedrock"] = {"mode": "assume_role", "role_arn": "arn:aws:iam::123456789012:role/x"}
    assert described(tenant)[1][2] == "aws:123456789012"

    tenant.provider_order.reverse()  # in place
    assert [t[0] for t in described(tenant)] == ["bedrock", "anthropic"]

    tenant.first_byte_timeout_s = 2.5
    assert {t[3] for t in described(tenant)} == {2.5}

    tenant.bedrock_external_id = "ext-2"
    assert described(tenant)[0][4]["external_id"] == "ext-2"

    tenant.provider_order = []  # the platform's order applies, and its changes too
    assert [t[0] for t in described(tenant)] == ["anthropic"]
    settings.ATRIUM_PROVIDER_ORDER = ["vertex:us-east5", "anthropic"]
    assert [t[0] for t in described(tenant)] == ["vertex", "anthropic"]


def test_a_caller_changing_its_list_changes_no_other_call() -> None:
    tenant = Tenant(schema_name="t_cache2", provider_order=["anthropic", "vertex:us-east5"], credentials={})
    mine = targets_for_tenant(tenant)
    mine.pop()
    mine.append(mine[0])
    assert [t.provider for t in targets_for_tenant(tenant)] == ["anthropic", "vertex"]

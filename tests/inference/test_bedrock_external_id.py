"""Assume-role with a platform-generated ExternalId per tenant: a role ARN copied into another tenant is useless."""

from __future__ import annotations

from typing import Any

import pytest

from inference.simulator import Simulator


def test_each_tenant_has_its_own_generated_external_id(tenants: dict[str, Any]) -> None:
    alpha, beta = tenants["alpha"], tenants["beta"]
    assert alpha.bedrock_external_id.startswith("atrium-") and len(alpha.bedrock_external_id) >= 30
    assert alpha.bedrock_external_id != beta.bedrock_external_id


def test_copied_role_arn_is_refused_for_the_other_tenant(sim: Simulator, settings: Any, tenants: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The finding: A copied B's role ARN into its own credentials and its calls ran under B's AWS role."""
    from inference.errors import ProviderMisconfigured
    from inference.providers.bedrock import credential_kwargs
    from inference.targets import targets_for_tenant

    alpha, beta = tenants["alpha"], tenants["beta"]
    settings.ATRIUM_STS_ENDPOINT_URL = f"{sim.url}/sts/"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPLATFORMIDENTITY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "platform-secret")
    role = "arn:aws:iam::210987654321:role/beta-bedrock"
    sim.trust_role(role, beta.bedrock_external_id)  # B's trust policy, as the admin page tells B to write it
    same_role = {"bedrock": {"mode": "assume_role", "role_arn": role}}
    # In memory only (what targets_for_tenant reads), on the session's tenant objects: monkeypatch puts the old
    # values back after the test, or every later test of these tenants would call Bedrock with B's role.
    for tenant in (alpha, beta):
        monkeypatch.setattr(tenant, "credentials", same_role)
        monkeypatch.setattr(tenant, "provider_order", ["bedrock:us-east-1"])
    # A stored ExternalId in the credentials (say, B's, copied too) is ignored: the tenant's own is always sent.
    monkeypatch.setattr(alpha, "credentials", {"bedrock": {**same_role["bedrock"],
                                                           "external_id": beta.bedrock_external_id}})

    (beta_target,) = targets_for_tenant(beta)
    keys = credential_kwargs(beta_target)
    assert keys["aws_access_key"].startswith("ASIASIMULATED")
    (alpha_target,) = targets_for_tenant(alpha)
    assert alpha_target.credentials["external_id"] == alpha.bedrock_external_id
    with pytest.raises(ProviderMisconfigured):
        credential_kwargs(alpha_target)
    sent = [r["credential"] for r in sim.requests(provider="sts")]
    assert sent == [beta.bedrock_external_id, alpha.bedrock_external_id]  # every AssumeRole carries one


def test_platform_admin_shows_the_external_id_for_the_trust_policy(public_client: Any,
                                                                  tenants: dict[str, Any]) -> None:
    from django.contrib.auth import get_user_model

    beta = tenants["beta"]
    root = get_user_model().objects.create_superuser("extid-root", "x@example.com", "pw-Secret-123")
    public_client.force_login(root)
    page = public_client.get(f"/admin/tenants/tenant/{beta.pk}/change/").content.decode()
    assert beta.bedrock_external_id in page and "sts:ExternalId" in page

"""Platform-owned policy: a tenant admin sees it read-only, may only tighten it, and the stricter value applies."""

from __future__ import annotations

from typing import Any

from tenants.models import Tenant


def _tenant_admin(make_user: Any, in_tenant: Any, tenant: Any, client: Any) -> Any:
    admin = make_user(tenant, role="admin", is_staff=True)
    with in_tenant(tenant):
        client.force_login(admin)
    return admin


def _policy_form(**overrides: str) -> dict[str, str]:
    form = {"own_allowed_models": "", "own_max_tokens_per_request": "", "own_user_requests_per_minute": "",
            "own_user_tokens_per_day": "", "processing_notice": ""}
    form.update(overrides)
    return form


def test_tenant_admin_cannot_raise_its_own_quotas(tenant_a: Any, client_a: Any, make_user: Any,
                                                  in_tenant: Any) -> None:
    """The finding: A edited its own tenant row (unlimited quotas, 200000 max tokens, own providers)."""
    _tenant_admin(make_user, in_tenant, tenant_a, client_a)
    before = Tenant.objects.values().get(pk=tenant_a.pk)
    # The platform's tenant admin has no URL on a tenant host.
    hostile = {"name": "A", "tokens_per_day": "", "requests_per_minute": "", "max_tokens_per_request": "200000",
               "provider_order": '["bedrock:us-east-1"]', "anthropic_api_key": "sk-mine"}
    assert client_a.post(f"/admin/tenants/tenant/{tenant_a.pk}/change/", hostile).status_code == 404
    # The tenant's policy page refuses anything above the platform's values ...
    url = f"/admin/access/tenantpolicy/{tenant_a.pk}/change/"
    response = client_a.post(url, _policy_form(own_max_tokens_per_request="200000",
                                               own_user_requests_per_minute="100000"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "You may only lower it" in body
    # ... and a valid tightening carries no platform field along with it, whatever the POST holds.
    response = client_a.post(url, {**hostile, **_policy_form(own_max_tokens_per_request="512")})
    assert response.status_code == 302, response.content.decode()[:2000]
    after = Tenant.objects.values().get(pk=tenant_a.pk)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"own_max_tokens_per_request"} and after["own_max_tokens_per_request"] == 512


def test_tenant_admin_sees_the_platform_policy_read_only(tenant_a: Any, client_a: Any, make_user: Any,
                                                         in_tenant: Any, tenant_b: Any) -> None:
    _tenant_admin(make_user, in_tenant, tenant_a, client_a)
    listing = client_a.get("/admin/access/tenantpolicy/")
    assert listing.status_code == 302 and listing["Location"].endswith(f"/tenantpolicy/{tenant_a.pk}/change/")
    page = client_a.get(listing["Location"]).content.decode()
    assert tenant_a.bedrock_external_id in page  # to paste into a role's trust policy
    assert 'name="max_tokens_per_request"' not in page and 'name="tokens_per_day"' not in page
    assert 'name="own_max_tokens_per_request"' in page
    # Another tenant's row is not reachable from here, to view or to write.
    other = client_a.get(f"/admin/access/tenantpolicy/{tenant_b.pk}/change/")
    assert other.status_code in (302, 404) and tenant_b.bedrock_external_id not in other.content.decode()
    before = Tenant.objects.values().get(pk=tenant_b.pk)
    client_a.post(f"/admin/access/tenantpolicy/{tenant_b.pk}/change/", _policy_form(own_max_tokens_per_request="1"))
    assert Tenant.objects.values().get(pk=tenant_b.pk) == before
    # A member without access.admin does not see it at all.
    member = make_user(tenant_a, role="basic_user", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(member)
    assert client_a.get(f"/admin/access/tenantpolicy/{tenant_a.pk}/change/").status_code == 403


def test_tightening_is_enforced_and_audited_with_the_real_actor(tenant_a: Any, client_a: Any, make_user: Any,
                                                                in_tenant: Any) -> None:
    from access.errors import ModelNotAllowed
    from access.policy import policy_check
    from access.quotas import _limits

    admin = _tenant_admin(make_user, in_tenant, tenant_a, client_a)
    response = client_a.post(f"/admin/access/tenantpolicy/{tenant_a.pk}/change/",
                             _policy_form(own_max_tokens_per_request="100", own_user_requests_per_minute="5",
                                          own_allowed_models="haiku", processing_notice="Our notice."))
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    power = make_user(tenant_a, role="power_user")
    with in_tenant(tenant_a):
        decision = policy_check(user=power, tenant=tenant, model="claude-haiku-5-5", tier="haiku", max_tokens=4000)
        assert decision.max_tokens == 100 and decision.clamp_reason == "tenant_max"
        try:
            policy_check(user=power, tenant=tenant, model="claude-sonnet-5-5", tier="sonnet", max_tokens=10)
        except ModelNotAllowed:
            pass
        else:
            raise AssertionError("the tenant's own allow-list was not applied")
        rpm, _tpd = _limits(tenant, power)
        assert ("your requests per minute", 5) in [(what, limit) for _key, limit, what in rpm]
        from audit.models import AuditEntry

        entry = AuditEntry.objects.filter(event_type="policy_change").order_by("-seq").first()
        assert entry is not None and entry.user_id == admin.pk
        assert entry.metadata["by"] == "tenant admin"
        assert entry.metadata["fields"] == ["own_allowed_models", "own_max_tokens_per_request",
                                            "own_user_requests_per_minute", "processing_notice"]
    # Looser than the platform never wins: the platform lowers its ceiling below the tenant's own.
    tenant.max_tokens_per_request = 50
    assert tenant.effective_max_tokens_per_request == 50
    tenant.allowed_models = ["sonnet"]  # the platform narrows to sonnet; the tenant's own list says haiku
    assert not tenant.model_allowed("claude-haiku-5-5", "haiku")
    assert not tenant.model_allowed("claude-sonnet-5-5", "sonnet")

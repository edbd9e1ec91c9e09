"""Processing notices: reads never write; a version is published in the transaction that changes the policy."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from tenants.models import Tenant


def _counts(in_tenant: Any, tenant: Any) -> tuple[int, int]:
    from audit.models import AuditEntry, ProcessingNotice

    with in_tenant(tenant):
        return ProcessingNotice.objects.count(), AuditEntry.objects.filter(event_type="notice_published").count()


def _policy_form(**overrides: str) -> dict[str, str]:
    form = {"own_allowed_models": "", "own_max_tokens_per_request": "", "own_user_requests_per_minute": "",
            "own_user_tokens_per_day": "", "processing_notice": ""}
    form.update(overrides)
    return form


def test_reads_publish_nothing(tenant_a: Any, client_a: Any, make_user: Any, in_tenant: Any) -> None:
    """A changed text that was never published (a raw UPDATE): GET /consent/, GET /chat/ and notice_current
    only read; the newest published version stays the one users are asked to accept."""
    from audit.services import notice_current, notice_publish

    with in_tenant(tenant_a):
        Tenant.objects.filter(pk=tenant_a.pk).update(processing_notice="First text.")
        first = notice_publish(Tenant.objects.get(pk=tenant_a.pk))
    Tenant.objects.filter(pk=tenant_a.pk).update(processing_notice="Second text, never published.")
    before = _counts(in_tenant, tenant_a)
    user = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        client_a.force_login(user)
    assert client_a.get("/consent/").status_code == 200
    client_a.get("/chat/")
    with in_tenant(tenant_a):
        current = notice_current(Tenant.objects.get(pk=tenant_a.pk))
    assert _counts(in_tenant, tenant_a) == before
    assert first is not None and current is not None and current.pk == first.pk and current.text == "First text."


def test_policy_page_publishes_the_new_version_with_its_audit_entry(tenant_a: Any, client_a: Any,
                                                                    make_user: Any, in_tenant: Any) -> None:
    from audit.models import AuditEntry, ProcessingNotice
    from audit.services import notice_current

    admin = make_user(tenant_a, role="admin", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(admin)
    versions, entries = _counts(in_tenant, tenant_a)
    url = f"/admin/access/tenantpolicy/{tenant_a.pk}/change/"
    response = client_a.post(url, _policy_form(processing_notice="We keep prompts 30 days."))
    assert response.status_code == 302, response.content.decode()[:1000]
    assert _counts(in_tenant, tenant_a) == (versions + 1, entries + 1)
    with in_tenant(tenant_a):
        notice = notice_current(Tenant.objects.get(pk=tenant_a.pk))
        assert notice is not None and notice.text == "We keep prompts 30 days."
        assert notice.version == ProcessingNotice.objects.order_by("-version").values_list("version", flat=True)[0]
        entry = AuditEntry.objects.filter(event_type="notice_published").order_by("-seq").first()
        assert entry is not None and entry.metadata == {"version": notice.version}
    # Saving the same text again publishes nothing.
    response = client_a.post(url, _policy_form(processing_notice="We keep prompts 30 days.",
                                               own_max_tokens_per_request="1000"))
    assert response.status_code == 302
    assert _counts(in_tenant, tenant_a) == (versions + 1, entries + 1)


def test_publication_rolls_back_with_the_policy_change(tenant_a: Any, in_tenant: Any) -> None:
    from audit.services import notice_publish

    before = _counts(in_tenant, tenant_a)

    class Refused(Exception):
        pass

    def change_that_fails() -> None:
        with in_tenant(tenant_a), transaction.atomic():
            Tenant.objects.filter(pk=tenant_a.pk).update(processing_notice="A change that fails.")
            assert notice_publish(Tenant.objects.get(pk=tenant_a.pk)) is not None
            raise Refused

    with pytest.raises(Refused):
        change_that_fails()
    assert _counts(in_tenant, tenant_a) == before


def test_provisioning_publishes_the_first_version(in_tenant: Any) -> None:
    """tenant_provision with a notice: version 1 exists (with its audit entry) before anyone reads it."""
    from tenants.services import tenant_provision

    tenant = tenant_provision(slug="noticefirst", name="Notice", processing_notice="Read me first.").tenant
    assert _counts(in_tenant, tenant) == (1, 1)

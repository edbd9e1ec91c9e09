"""Issue 14, "permissions": each compliance console action checks its own permission.

The finding: a user holding only audit.view_audit retried a failed GDPR deletion job from the console, which then
erased the subject. Every action is now its own view with its own permission."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission

from audit import gdpr
from audit.models import AuditEntry, GdprJob

pytestmark = pytest.mark.django_db


def login(client: Any, tenant: Any, in_tenant: Any, user: Any) -> None:
    with in_tenant(tenant):
        client.force_login(user)


def _with_perms(make_user: Any, tenant: Any, in_tenant: Any, username: str, *codenames: str) -> Any:
    user = make_user(tenant, None, username=username)
    with in_tenant(tenant):
        for codename in codenames:
            user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def failed_deletion(tenant_a: Any, make_user: Any, in_tenant: Any) -> GdprJob:
    subject = make_user(tenant_a, "basic_user", username="to-erase")
    officer = make_user(tenant_a, "compliance_officer", username="officer")
    with in_tenant(tenant_a):
        job = gdpr.gdpr_request(kind="deletion", subject=subject, requested_by=officer)
        GdprJob.objects.filter(pk=job.pk).update(status=GdprJob.Status.FAILED, error="worker lost")
        job.refresh_from_db()
    return job


def test_auditor_cannot_retry_a_failed_deletion(failed_deletion: GdprJob, tenant_a: Any, make_user: Any,
                                                in_tenant: Any, client_a: Any) -> None:
    auditor = _with_perms(make_user, tenant_a, in_tenant, "auditor", "view_audit")
    login(client_a, tenant_a, in_tenant, auditor)
    page = client_a.get("/compliance/")
    assert page.status_code == 200 and b"/retry/" not in page.content  # no button offered
    refused = client_a.post(f"/compliance/jobs/{failed_deletion.id}/retry/")
    assert refused.status_code == 403 and b"audit.delete_data" in refused.content
    # The old single-endpoint form of the attack is gone too: the page only reads.
    assert client_a.post("/compliance/", {"action": "retry", "job": str(failed_deletion.id)}).status_code == 405
    with in_tenant(tenant_a):
        failed_deletion.refresh_from_db()
        assert failed_deletion.status == GdprJob.Status.FAILED
        assert not AuditEntry.objects.filter(event_type="deletion_retried").exists()


def test_exporter_cannot_retry_a_deletion_but_deleter_can(failed_deletion: GdprJob, tenant_a: Any, make_user: Any,
                                                          in_tenant: Any, client_a: Any) -> None:
    exporter = _with_perms(make_user, tenant_a, in_tenant, "exporter", "export_data")
    login(client_a, tenant_a, in_tenant, exporter)
    assert client_a.post(f"/compliance/jobs/{failed_deletion.id}/retry/").status_code == 403
    deleter = _with_perms(make_user, tenant_a, in_tenant, "deleter", "delete_data")
    login(client_a, tenant_a, in_tenant, deleter)
    assert client_a.post(f"/compliance/jobs/{failed_deletion.id}/retry/").status_code == 302
    with in_tenant(tenant_a):
        failed_deletion.refresh_from_db()
        assert failed_deletion.status == GdprJob.Status.QUEUED
        assert AuditEntry.objects.filter(event_type="deletion_retried").count() == 1


@pytest.mark.parametrize(("url", "data", "holds"), [
    ("/compliance/jobs/export/", {"subject": "victim"}, ("view_audit", "delete_data")),
    ("/compliance/jobs/deletion/", {"subject": "victim", "confirm": "on"}, ("view_audit", "export_data")),
    ("/compliance/verify/", {}, ("export_data", "delete_data")),
])
def test_each_action_needs_its_own_permission(url: str, data: dict[str, str], holds: tuple[str, ...],
                                              tenant_a: Any, make_user: Any, in_tenant: Any, client_a: Any) -> None:
    make_user(tenant_a, "basic_user", username="victim")
    user = _with_perms(make_user, tenant_a, in_tenant, "partial", *holds)
    login(client_a, tenant_a, in_tenant, user)
    # Counted before and after: jobs committed by other tests (the worker tests) may already be in the schema.
    with in_tenant(tenant_a):
        jobs, verified = GdprJob.objects.count(), AuditEntry.objects.filter(event_type="audit_verified").count()
    assert client_a.post(url, data).status_code == 403
    with in_tenant(tenant_a):
        assert GdprJob.objects.count() == jobs
        assert AuditEntry.objects.filter(event_type="audit_verified").count() == verified


def test_basic_user_and_bad_job_ids(failed_deletion: GdprJob, tenant_a: Any, make_user: Any, in_tenant: Any,
                                    client_a: Any) -> None:
    login(client_a, tenant_a, in_tenant, make_user(tenant_a, "basic_user", username="plain"))
    assert client_a.get("/compliance/").status_code == 403
    assert client_a.get("/compliance/jobs.json").json() == {"type": "error", "error": {
        "type": "permission_error",
        "message": "This needs the permission audit.view_audit or audit.export_data or audit.delete_data."}}
    login(client_a, tenant_a, in_tenant, _with_perms(make_user, tenant_a, in_tenant, "deleter", "delete_data"))
    assert client_a.post("/compliance/jobs/not-a-uuid/retry/").status_code == 404
    login(client_a, tenant_a, in_tenant, _with_perms(make_user, tenant_a, in_tenant, "auditor", "view_audit"))
    assert client_a.get("/compliance/?since=not-a-date&until=2020-13-45").status_code == 200

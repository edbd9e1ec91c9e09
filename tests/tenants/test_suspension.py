"""A deactivated tenant is suspended on every path of its hosts, and its background work pauses (in-process; the
real-gunicorn walk is tests/tenants/test_isolation_server.py)."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tenants.models import Tenant

PATHS = ["/", "/accounts/login/", "/admin/", "/admin/login/", "/admin/auth/user/", "/chat/", "/compliance/",
         "/account/keys/", "/api/conversations/", "/api/access/me/", "/api/docs/", "/v1/models"]


def _suspend(tenant: Any, active: bool = False) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=active)


def test_every_path_of_a_suspended_tenant_answers_suspended(tenant_a: Any, client_a: Any, make_user: Any,
                                                            in_tenant: Any) -> None:
    from access.services import api_key_create

    admin = make_user(tenant_a, role="admin", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(admin)  # a session that exists before the suspension
        _row, key = api_key_create(user=admin, name="suspension")
    assert client_a.get("/admin/").status_code == 200
    _suspend(tenant_a)
    anonymous = Client(HTTP_HOST="alpha.localhost")
    for client in (client_a, anonymous):
        for path in PATHS:
            response = client.get(path, HTTP_X_API_KEY=key)
            assert response.status_code == 403, (path, response.status_code)
            if path.startswith(("/v1/", "/api/")):
                assert response.json()["type"] == "error"
                assert response.json()["error"]["type"] == "permission_error"
                assert "suspended" in response.json()["error"]["message"]
            else:
                assert b"Tenant suspended" in response.content, path
    # Writes too: sign-in, a model call, an admin change.
    assert anonymous.post("/accounts/login/", {"username": admin.username, "password": "pw-Secret-123"}
                          ).status_code == 403
    assert anonymous.post("/v1/messages", {"model": "haiku"}, content_type="application/json",
                          HTTP_X_API_KEY=key).status_code == 403
    assert client_a.post(f"/admin/auth/user/{admin.pk}/change/", {"is_staff": ""}).status_code == 403
    # Probes still describe the process; the other tenant and the platform are untouched.
    assert anonymous.get("/healthz").status_code == 200
    assert Client(HTTP_HOST="beta.localhost").get("/accounts/login/").status_code == 200
    # Reactivated: the same session works again.
    _suspend(tenant_a, active=True)
    assert client_a.get("/admin/").status_code == 200


def test_background_work_pauses_for_a_suspended_tenant_except_gdpr_deletion_and_retention(
        tenant_a: Any, in_tenant: Any) -> None:
    from audit.tasks import retention_run
    from tenants.tasks import schema_probe

    headers = {"_schema_name": "alpha"}
    assert schema_probe.apply(headers=headers).get() == "alpha"
    _suspend(tenant_a)
    assert schema_probe.apply(headers=headers).get() is None  # skipped: the body never ran
    assert retention_run.apply(headers=headers).get() == 0  # retention still runs (nothing old to delete)
    _suspend(tenant_a, active=True)
    assert schema_probe.apply(headers=headers).get() == "alpha"


def test_gdpr_deletion_runs_for_a_suspended_tenant_and_an_export_waits(tenant_a: Any, in_tenant: Any,
                                                                        make_user: Any) -> None:
    from audit.gdpr.jobs import gdpr_request
    from audit.models import GdprJob
    from audit.tasks import gdpr_run

    officer = make_user(tenant_a, role="compliance_officer")
    subject = make_user(tenant_a, role="basic_user")
    other = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        deletion = gdpr_request(kind="deletion", subject=subject, requested_by=officer)
        export = gdpr_request(kind="export", subject=other, requested_by=officer)
    _suspend(tenant_a)
    headers = {"_schema_name": "alpha"}
    gdpr_run.apply(args=[str(export.id)], headers=headers)
    gdpr_run.apply(args=[str(deletion.id)], headers=headers)
    with in_tenant(tenant_a):
        assert GdprJob.objects.get(pk=export.pk).status == GdprJob.Status.QUEUED  # paused
        assert GdprJob.objects.get(pk=deletion.pk).status == GdprJob.Status.DONE  # the law does not wait

"""The platform site: creating a tenant end to end, deleting, domains that cannot be taken over, and every platform
change announced for the platform trail with the real actor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tenants.models import Domain, Tenant


@pytest.fixture
def platform_changes() -> Iterator[list[dict[str, Any]]]:
    """Every platform_object_changed sent during the test (what audit.platform records)."""
    from tenants.signals import platform_object_changed

    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append({k: kwargs[k] for k in ("actor", "action", "target", "tenant_schema", "metadata")})

    platform_object_changed.connect(receiver, dispatch_uid="test_platform_changes")
    yield seen
    platform_object_changed.disconnect(dispatch_uid="test_platform_changes")


@pytest.fixture
def root(public_client: Client, tenants: Any) -> Iterator[Client]:
    from django.db import connection

    connection.set_schema_to_public()  # a previous test's request may have left it on a tenant
    user = get_user_model().objects.create_superuser("root-ops", "ops@example.com", "pw-Secret-123")
    public_client.force_login(user)
    yield public_client
    connection.set_schema_to_public()


CREATE = {"name": "Created From UI", "slug": "created-ui", "domain": "", "admin_email": "boss@created.example",
          "allowed_models": "sonnet, haiku", "max_tokens_per_request": "4096", "requests_per_minute": "60",
          "tokens_per_day": "100000", "user_requests_per_minute": "", "user_tokens_per_day": "",
          "retention_days": "30"}


def test_tenant_created_from_the_platform_form_is_usable_when_it_returns(
        root: Client, mailoutbox: Any, django_capture_on_commit_callbacks: Any,
        platform_changes: list[dict[str, Any]]) -> None:
    form = root.get("/admin/tenants/tenant/add/").content.decode()
    assert 'name="admin_email"' in form and 'name="slug"' in form
    with django_capture_on_commit_callbacks(execute=True):
        response = root.post("/admin/tenants/tenant/add/", CREATE)
    assert response.status_code == 302, response.content.decode()[:3000]
    tenant = Tenant.objects.get(schema_name="created_ui")
    assert (tenant.allowed_models, tenant.max_tokens_per_request, tenant.tokens_per_day) == (
        ["sonnet", "haiku"], 4096, 100000)
    assert list(tenant.domains.values_list("domain", "is_primary")) == [("created-ui.localhost", True)]
    assert [(c["actor"], c["action"], c["target"]) for c in platform_changes] == [
        ("platform:root-ops", "tenant_create", "tenant:created_ui")]
    # The invitation: a set-password link on the tenant's own host, through Django's mail backend.
    (mail,) = mailoutbox
    assert mail.to == ["boss@created.example"] and "expires" in mail.body
    link = re.search(r"http://created-ui\.localhost(?::\d+)?(/accounts/reset/\S+/)", mail.body)
    assert link, mail.body
    host = Client(HTTP_HOST="created-ui.localhost")
    set_password = host.get(link.group(1))
    assert set_password.status_code == 302  # Django moves the token out of the URL first
    page = host.get(set_password["Location"])
    assert page.status_code == 200 and 'name="new_password1"' in page.content.decode()
    done = host.post(set_password["Location"], {"new_password1": "Brand-New-Pass-42",
                                                 "new_password2": "Brand-New-Pass-42"})
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    assert host.get(link.group(1)).status_code in (200, 302)  # a used link shows "invalid", never sets again
    assert host.post("/admin/login/?next=/admin/", {"username": "boss@created.example",
                                                    "password": "Brand-New-Pass-42"}).status_code == 302
    assert host.get("/admin/").status_code == 200
    assert host.get("/admin/auth/user/").status_code == 200


@pytest.mark.parametrize(("change", "error"), [
    ({"slug": "alpha"}, "already exists"),
    ({"domain": "beta.localhost"}, "already belongs to a tenant"),
    ({"slug": "Bad Slug!"}, "Invalid slug"),
    ({"slug": "public"}, "reserved"),
    ({"admin_email": "not-an-email"}, "valid email"),
    ({"max_tokens_per_request": "-1"}, "greater than or equal to"),
    ({"allowed_models": "gpt-4"}, "Unknown model tier or id"),
])
def test_tenant_creation_refusals_are_form_errors(root: Client, change: dict[str, str], error: str) -> None:
    count = Tenant.objects.count()
    response = root.post("/admin/tenants/tenant/add/", {**CREATE, **change})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert Tenant.objects.count() == count


def test_deleting_a_tenant_or_a_domain_never_fails_and_never_strands_a_host(
        root: Client, platform_changes: list[dict[str, Any]], tenant_b: Any) -> None:
    from tenants.services import tenant_provision

    doomed = tenant_provision(slug="doomed", name="Doomed").tenant
    page = root.get(f"/admin/tenants/tenant/{doomed.pk}/delete/")
    assert page.status_code == 200
    assert root.post(f"/admin/tenants/tenant/{doomed.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Tenant.objects.filter(pk=doomed.pk).exists()
    assert ("platform:root-ops", "tenant_delete") in [(c["actor"], c["action"]) for c in platform_changes]
    public = Tenant.objects.get(schema_name="public")
    assert root.post(f"/admin/tenants/tenant/{public.pk}/delete/", {"post": "yes"}).status_code == 403
    # The platform's own host and a tenant's only domain cannot be deleted or moved.
    localhost = Domain.objects.get(domain="localhost")
    beta_only = Domain.objects.get(domain="beta.localhost")
    assert root.post(f"/admin/tenants/domain/{localhost.pk}/delete/", {"post": "yes"}).status_code == 403
    assert root.post(f"/admin/tenants/domain/{beta_only.pk}/delete/", {"post": "yes"}).status_code == 403
    alpha = Tenant.objects.get(schema_name="alpha")
    moved = root.post(f"/admin/tenants/domain/{localhost.pk}/change/",
                      {"domain": "localhost", "tenant": str(alpha.pk), "is_primary": "on"})
    assert moved.status_code == 200 and "platform&#x27;s own host" in moved.content.decode()
    moved = root.post(f"/admin/tenants/domain/{beta_only.pk}/change/",
                      {"domain": "beta.localhost", "tenant": str(alpha.pk), "is_primary": "on"})
    assert moved.status_code == 200 and "only domain" in moved.content.decode()
    assert Domain.objects.get(pk=localhost.pk).tenant_id == public.pk
    assert Domain.objects.get(pk=beta_only.pk).tenant_id == tenant_b.pk
    # Adding a second domain is a recorded platform change.
    added = root.post("/admin/tenants/domain/add/", {"domain": "beta2.localhost", "tenant": str(tenant_b.pk)})
    assert added.status_code == 302
    assert ("domain_add", "domain:beta2.localhost") in [(c["action"], c["target"]) for c in platform_changes]


def test_platform_changes_are_announced_with_the_real_actor(root: Client, platform_changes: list[dict[str, Any]],
                                                            tenant_b: Any) -> None:
    from django_celery_beat.models import IntervalSchedule
    from django_tenants.utils import tenant_context

    from audit.models import AuditEntry
    from inference.catalog.models import CatalogModel

    form = {"name": "Beta", "allowed_models": "", "max_tokens_per_request": "1024", "requests_per_minute": "600",
            "tokens_per_day": "5000000", "user_requests_per_minute": "", "user_tokens_per_day": "",
            "retention_days": "30", "data_region": "", "provider_order": "[]", "gdpr_account_action": "deactivate",
            "record_policy": "fail_closed",
            "bedrock_mode": "assume_role", "bedrock_role_arn": "arn:aws:iam::1:role/beta",
            "domains-TOTAL_FORMS": "0", "domains-INITIAL_FORMS": "0", "domains-MIN_NUM_FORMS": "0",
            "domains-MAX_NUM_FORMS": "1000"}
    response = root.post(f"/admin/tenants/tenant/{tenant_b.pk}/change/", form)  # is_active unticked: deactivate
    assert response.status_code == 302, response.content.decode()[:3000]
    actions = [(c["actor"], c["action"], c["target"]) for c in platform_changes]
    assert ("platform:root-ops", "tenant_deactivate", "tenant:beta") in actions
    assert ("platform:root-ops", "tenant_policy_change", "tenant:beta") in actions
    assert ("platform:root-ops", "tenant_credentials_change", "tenant:beta") in actions
    assert "arn:aws" not in str(platform_changes)  # which providers changed, never the values
    with tenant_context(Tenant.objects.get(pk=tenant_b.pk)):
        entry = AuditEntry.objects.filter(event_type="policy_change").order_by("-seq").first()
        assert entry is not None and entry.personal["username"] == "root-ops"
        assert "is_active" in entry.metadata["fields"]
    from django.db import connection

    connection.set_schema_to_public()
    every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    task = root.post("/admin/django_celery_beat/periodictask/add/", {
        "name": "ops-probe", "regtask": "tenants.tasks.schema_probe", "task": "", "enabled": "on",
        "interval": str(every.pk), "args": "[]", "kwargs": "{}", "headers": "{}", "priority": "",
        "expire_seconds": "", "queue": "", "exchange": "", "routing_key": "", "description": ""})
    assert task.status_code == 302, task.content.decode()[-3000:]
    model = CatalogModel.objects.order_by("pk").first()
    assert model is not None
    assert root.post("/admin/catalog/catalogmodel/", {
        "action": "delete_selected", "_selected_action": [str(model.pk)]}).status_code == 200  # confirmation
    assert root.post("/admin/catalog/providerhealthcheck/reset/anthropic/", {"confirm": "yes"}).status_code == 302
    actions = [c["action"] for c in platform_changes]
    assert "breaker_reset" in actions
    assert "beat_schedule_add" in actions
    assert all(c["actor"] == "platform:root-ops" for c in platform_changes)


def test_platform_changes_land_in_the_platform_trail_with_the_real_actor(root: Client, tenant_b: Any,
                                                                         capsys: Any) -> None:
    """Each platform change is an entry of the hash-chained platform trail, in the change's own transaction, and
    `verify_audit --platform` proves the chain."""
    from django.core.management import call_command

    from audit.platform.models import PlatformAuditEntry

    before = PlatformAuditEntry.objects.count()
    assert root.post("/admin/tenants/domain/add/", {"domain": "trail.localhost",
                                                    "tenant": str(tenant_b.pk)}).status_code == 302
    assert root.post("/admin/catalog/providerhealthcheck/reset/bedrock:us-east-1/",
                     {"confirm": "yes"}).status_code == 302
    entries = list(PlatformAuditEntry.objects.order_by("seq")[before:])
    assert [(e.actor, e.action, e.target, e.tenant_schema) for e in entries] == [
        ("platform:root-ops", "domain_add", "domain:trail.localhost", "beta"),
        ("platform:root-ops", "breaker_reset", "breaker:bedrock:us-east-1", ""),
    ]
    call_command("verify_audit", "--platform")
    assert "platform" in capsys.readouterr().out
    # A refused change leaves no entry: the platform's own host cannot be moved.
    localhost = Domain.objects.get(domain="localhost")
    root.post(f"/admin/tenants/domain/{localhost.pk}/change/",
              {"domain": "localhost", "tenant": str(tenant_b.pk), "is_primary": "on"})
    assert PlatformAuditEntry.objects.count() == before + 2


def test_create_tenant_command_is_in_the_platform_trail(tenants: Any, db: None) -> None:
    import getpass

    from django.core.management import call_command
    from django.db import connection

    from audit.platform.models import PlatformAuditEntry

    call_command("create_tenant", "cli-made", "--name", "CLI Made", "--admin-email", "first@cli.example",
                 stdout=open("/dev/null", "w"))  # noqa: SIM115 - the one-time password is not for the test log
    connection.set_schema_to_public()
    entry = PlatformAuditEntry.objects.order_by("-seq").first()
    assert entry is not None
    assert (entry.actor, entry.action, entry.target) == (f"cli:{getpass.getuser()}", "tenant_create",
                                                         "tenant:cli_made")

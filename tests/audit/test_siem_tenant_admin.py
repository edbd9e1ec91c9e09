"""A tenant's administrators manage the SIEM destinations of their own trail in the tenant admin: only their own
tenant's, only the ones they made (the platform's are read-only), every change in their audit trail."""

from __future__ import annotations

from typing import Any

from django.db import connection

from audit.models import AuditEntry
from audit.platform.models import SiemCursor, SiemDestination
from audit.siem.services import siem_destination_save

URL = "/admin/audit/tenantsiemdestination/"
FORM = {"name": "our soc", "url": "https://127.0.0.1:8443/ingest", "secret": "tenant-siem-hunter2", "ca_bundle": "",
        "verify_tls": "on", "enabled": "on", "cursors-TOTAL_FORMS": "0", "cursors-INITIAL_FORMS": "0"}


def test_a_tenant_admin_adds_a_destination_for_its_own_trail_and_it_is_audited(
        client_a: Any, make_user: Any, tenant_a: Any, in_tenant: Any) -> None:
    admin = make_user(tenant_a, role="admin", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(admin)
    response = client_a.post(f"{URL}add/", FORM)
    assert response.status_code == 302, response.content.decode()[:2000]
    connection.set_schema_to_public()
    made = SiemDestination.objects.get(name="our soc")
    assert (made.tenant_id, made.owner, made.secret) == (tenant_a.pk, "tenant", "tenant-siem-hunter2")
    assert SiemCursor.objects.get(destination=made).chain == "alpha"
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.filter(event_type="siem_destination_change").order_by("-seq").first()
        assert entry is not None and entry.metadata["action"] == "add"
        assert entry.metadata["destination"] == str(made.pk) and "secret" in entry.metadata["fields"]
        assert "hunter2" not in str(entry.metadata) and entry.user_id == admin.pk
        page = client_a.get(f"{URL}{made.pk}/change/").content.decode()
        assert "our soc" in page and "hunter2" not in page


def test_a_tenant_admin_cannot_reach_another_tenants_or_change_the_platforms(
        client_a: Any, make_user: Any, tenant_a: Any, tenant_b: Any, in_tenant: Any) -> None:
    connection.set_schema_to_public()
    theirs = siem_destination_save(destination=SiemDestination(
        name="beta soc", tenant=tenant_b, url="syslog+tls://127.0.0.1:6514", owner="tenant", backfill=False))
    platforms = siem_destination_save(destination=SiemDestination(
        name="platform soc for alpha", tenant=tenant_a, url="syslog+tls://127.0.0.1:6514", backfill=False))
    user = make_user(tenant_a, role="admin", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(user)
    listing = client_a.get(URL).content.decode()
    assert "platform soc for alpha" in listing and "beta soc" not in listing
    assert client_a.get(f"{URL}{theirs.pk}/change/").status_code == 302  # "does not exist" here: back to the index
    assert client_a.post(f"{URL}{theirs.pk}/delete/", {"post": "yes"}).status_code == 302
    # The platform's destination is shown read-only: a change or a deletion is refused.
    page = client_a.get(f"{URL}{platforms.pk}/change/")
    assert page.status_code == 200 and 'name="url"' not in page.content.decode()
    assert client_a.post(f"{URL}{platforms.pk}/change/", {**FORM, "url": "https://127.0.0.1:9/x"}).status_code == 403
    assert client_a.post(f"{URL}{platforms.pk}/delete/", {"post": "yes"}).status_code == 403
    connection.set_schema_to_public()
    assert SiemDestination.objects.filter(pk__in=[theirs.pk, platforms.pk]).count() == 2
    assert SiemDestination.objects.get(pk=platforms.pk).url == "syslog+tls://127.0.0.1:6514"


def test_only_administrators_and_only_public_or_allow_listed_addresses(
        client_a: Any, make_user: Any, tenant_a: Any, in_tenant: Any) -> None:
    basic, admin = make_user(tenant_a, role="basic_user", is_staff=True), make_user(tenant_a, role="admin",
                                                                                      is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(basic)
    assert client_a.get(URL).status_code == 403
    with in_tenant(tenant_a):
        client_a.force_login(admin)
    refused = client_a.post(f"{URL}add/", {**FORM, "url": "syslog+tls://10.9.8.7:6514"})
    assert refused.status_code == 200 and "private, loopback or link-local" in refused.content.decode()
    connection.set_schema_to_public()
    assert not SiemDestination.objects.filter(name="our soc").exists()

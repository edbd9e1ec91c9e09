"""SIEM destinations in the platform admin: the address rules, the write-only encrypted secret, the audited save
that creates the cursor; the lag gauges on /metrics; the platform trail's own destination."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client, override_settings

from audit.platform.models import PlatformAuditEntry, SiemCursor, SiemDestination
from audit.platform.services import platform_audit_record
from audit.siem.admin import SiemDestinationForm
from audit.siem.services import siem_destination_save
from audit.siem.streamer import StreamResult, routes, stream_route
from tests.audit.siem_receivers import SyslogReceiver
from tests.conftest import free_port

PEM_GARBAGE = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"


def form(**data: Any) -> SiemDestinationForm:
    values = {"name": "siem", "tenant": "", "url": "", "secret": "", "ca_bundle": "", "verify_tls": "on",
              "enabled": "on"}
    values.update(data)
    return SiemDestinationForm(data=values)


@pytest.mark.django_db
def test_the_form_refuses_unusable_or_private_addresses(tenants: Any) -> None:
    assert "url" in form(url="ftp://siem.example/").errors
    assert "url" in form(url="syslog://10.1.2.3:514").errors  # private, not allow-listed
    assert "url" in form(url="syslog+tls://169.254.169.254:6514").errors  # cloud metadata
    assert "url" in form(url="syslog+tls://127.0.0.1").errors  # no port
    assert "url" in form(url="https://user:pw@127.0.0.1:8443/x", secret="s").errors
    assert "secret" in form(url="https://127.0.0.1:8443/ingest").errors  # a webhook needs its signing key
    assert "ca_bundle" in form(url="syslog+tls://127.0.0.1:6514", ca_bundle=PEM_GARBAGE).errors
    with override_settings(ATRIUM_OUTBOUND_ALLOWED_HOSTS=[]):
        assert "url" in form(url="syslog+tls://127.0.0.1:6514").errors  # loopback, once not allow-listed
    assert form(url="syslog+tls://127.0.0.1:6514").is_valid()


@pytest.fixture
def root(public_client: Client) -> Iterator[Client]:
    connection.set_schema_to_public()
    user = get_user_model().objects.create_superuser("siem-ops", "siem-ops@example.com", "pw-Secret-123")
    public_client.force_login(user)
    yield public_client
    connection.set_schema_to_public()


def test_the_admin_stores_the_secret_encrypted_audits_the_change_and_starts_the_cursor_at_the_head(
        root: Client, tenant_a: Any) -> None:
    before = PlatformAuditEntry.objects.count()
    response = root.post("/admin/audit_platform/siemdestination/add/", {
        "name": "alpha soc", "tenant": str(tenant_a.pk), "url": "https://127.0.0.1:8443/ingest",
        "secret": "hunter2-siem", "ca_bundle": "", "verify_tls": "on", "enabled": "on",
        "cursors-TOTAL_FORMS": "0", "cursors-INITIAL_FORMS": "0"})
    assert response.status_code == 302, response.content.decode()[:2000]
    made = SiemDestination.objects.get(name="alpha soc")
    assert made.secret == "hunter2-siem" and made.chain == "alpha"
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM audit_platform_siemdestination WHERE id = %s", [made.pk])
        stored = cursor.fetchone()[0]
    assert stored and "hunter2" not in stored
    entry = PlatformAuditEntry.objects.order_by("-seq").first()
    assert PlatformAuditEntry.objects.count() == before + 1 and entry is not None
    assert entry.action == "siem_destination_add" and "hunter2" not in str(entry.metadata)
    cursor_row = SiemCursor.objects.get(destination=made)
    assert cursor_row.chain == "alpha" and cursor_row.last_seq == cursor_row.head_seq  # no backfill asked
    page = root.get(f"/admin/audit_platform/siemdestination/{made.pk}/change/").content.decode()
    assert "hunter2" not in page and "secret stored" in page.lower()
    # Saved again with the secret left blank: the stored one stays.
    response = root.post(f"/admin/audit_platform/siemdestination/{made.pk}/change/", {
        "name": "alpha soc", "tenant": str(tenant_a.pk), "url": "https://127.0.0.1:8443/ingest", "secret": "",
        "ca_bundle": "", "verify_tls": "on", "enabled": "on", "cursors-TOTAL_FORMS": "1",
        "cursors-INITIAL_FORMS": "1", "cursors-0-id": str(cursor_row.pk), "cursors-0-destination": str(made.pk)})
    assert response.status_code == 302, response.content.decode()[:2000]
    made.refresh_from_db()
    assert made.secret == "hunter2-siem"


def test_the_platform_trail_streams_with_its_own_chain_and_the_lag_is_on_metrics(
        committed: None, tenants: Any) -> None:
    receiver = SyslogReceiver(free_port())
    made = siem_destination_save(destination=SiemDestination(name="platform soc", tenant=None, url=receiver.url,
                                                             backfill=False))
    try:
        with transaction.atomic():
            written = [platform_audit_record(actor="test", action="siem_platform_probe", target=f"probe:{i}")
                       for i in range(3)]
        route = next(r for r in routes() if r.destination_id == made.pk)
        assert stream_route(route).failed  # the receiver is not up yet
        with override_settings(ATRIUM_METRICS_TOKEN="siem-metrics-token"):
            metrics = Client(HTTP_HOST="localhost").get(
                "/metrics", HTTP_AUTHORIZATION="Bearer siem-metrics-token").content.decode()
        assert 'atrium_audit_siem_lag_entries{chain="public",destination="platform soc"} 3.0' in metrics
        assert 'atrium_audit_siem_consecutive_failures{chain="public",destination="platform soc"} 1.0' in metrics
        SiemCursor.objects.filter(destination=made).update(next_attempt_at=None)
        receiver.start()
        assert stream_route(route) == StreamResult(sent=3)
        docs = [m.document for m in receiver.wait_for(3)]
        assert [d["id"] for d in docs] == [f"public/{e.seq}/{e.mac}" for e in written]
        assert docs[0]["chained"]["action"] == "siem_platform_probe" and docs[0]["chain"] == "public"
        from audit.platform.chain import platform_key
        from audit.verify import entry_mac_of

        assert all(entry_mac_of(platform_key(), d["prev_mac"], d["chained"]) == d["mac"] for d in docs)
    finally:
        receiver.stop()
        SiemDestination.objects.filter(pk=made.pk).delete()


@pytest.mark.django_db
def test_key_rotation_reencrypts_the_siem_secret(tenants: Any) -> None:
    from cryptography.fernet import Fernet
    from django.conf import settings
    from django.core.management import call_command

    from tenants import crypto

    old_keys = list(settings.ATRIUM_ENCRYPTION_KEYS)
    made = SiemDestination.objects.create(name="rotated", url="https://127.0.0.1:8443/x", secret="rotate-me-siem")
    new_key = Fernet.generate_key().decode()
    try:
        with override_settings(ATRIUM_ENCRYPTION_KEYS=[new_key, *old_keys]):
            crypto.reset_keys()
            call_command("rotate_encryption_keys", stdout=None)
        with override_settings(ATRIUM_ENCRYPTION_KEYS=[new_key]):
            crypto.reset_keys()
            assert SiemDestination.objects.get(pk=made.pk).secret == "rotate-me-siem"
    finally:
        crypto.reset_keys()

"""The platform audit trail: written from any schema in the caller's transaction, append-only, verifiable."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.platform.chain import platform_chain_verify
from audit.platform.models import PlatformAuditEntry
from audit.platform.services import platform_audit_record
from tests.audit.tamper import as_replica, with_triggers_disabled
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db
TABLE = "public.audit_platform_platformauditentry"


def _record(n: int, **extra: Any) -> list[PlatformAuditEntry]:
    return [platform_audit_record(actor="platform-root", action="tenant_change", target=f"tenant:t{i}",
                                  tenant_schema="alpha", metadata={"fields": ["name"], "i": i}, **extra)
            for i in range(n)]


def test_entries_chain_from_any_schema_and_verify(tenant_a: Any, in_tenant: Any) -> None:
    first = _record(1)[0]
    with in_tenant(tenant_a):  # a platform admin's change reaching into a tenant: still the public chain
        second = platform_audit_record(actor="platform-root", action="domain_change", target="domain:7",
                                       tenant_schema=tenant_a.schema_name, metadata={"domain": "a.example"})
        assert connection.schema_name == tenant_a.schema_name  # the caller's schema is left alone
    assert second.seq == first.seq + 1 and second.prev_mac == first.mac
    stored = PlatformAuditEntry.objects.get(seq=second.seq)
    assert (stored.actor, stored.action, stored.target, stored.tenant_schema, stored.metadata) == (
        "platform-root", "domain_change", "domain:7", tenant_a.schema_name, {"domain": "a.example"})
    with connection.cursor() as cursor:  # it lives in the public schema, nowhere else
        cursor.execute("SELECT table_schema FROM information_schema.tables "
                       "WHERE table_name = 'audit_platform_platformauditentry'")
        assert [row[0] for row in cursor.fetchall()] == ["public"]
    result = platform_chain_verify()
    assert result.ok, str(result)
    assert result.head_seq == second.seq
    call_command("verify_audit", platform=True)


def test_entry_rolls_back_with_the_change_it_records() -> None:
    before = PlatformAuditEntry.objects.count()

    def failing_change() -> None:
        with transaction.atomic():
            platform_audit_record(actor="platform-root", action="tenant_delete", target="tenant:x")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert PlatformAuditEntry.objects.count() == before


def test_orm_and_database_refuse_update_delete_truncate() -> None:
    entry = _record(1)[0]
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        PlatformAuditEntry.objects.filter(pk=entry.pk).update(actor="someone else")
    with pytest.raises(PermissionError):
        PlatformAuditEntry.objects.filter(pk=entry.pk).delete()
    for statement in ("UPDATE public.audit_platform_platformauditentry SET actor = 'x' WHERE id = %s",
                      "DELETE FROM public.audit_platform_platformauditentry WHERE id = %s",
                      "TRUNCATE public.audit_platform_platformauditentry"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(statement, [entry.pk] if "%s" in statement else [])
    assert PlatformAuditEntry.objects.filter(pk=entry.pk, actor="platform-root").exists()


def test_edit_with_triggers_disabled_is_detected(capsys: pytest.CaptureFixture[str]) -> None:
    entries = _record(4)
    as_replica(("UPDATE public.audit_platform_platformauditentry SET actor = 'someone-else' WHERE seq = %s",
                [entries[1].seq]))
    result = platform_chain_verify()
    assert not result.ok
    assert result.broken_seq == entries[1].seq
    assert f"entry #{entries[1].seq}: MAC does not match" in result.reason
    with pytest.raises(CommandError, match="broken in: platform"):
        call_command("verify_audit", platform=True)
    assert f"entry #{entries[1].seq}: MAC does not match" in capsys.readouterr().err


def test_deleted_entry_is_a_gap() -> None:
    entries = _record(4)
    with_triggers_disabled(TABLE, ("DELETE FROM public.audit_platform_platformauditentry WHERE seq = %s",
                                   [entries[2].seq]))
    result = platform_chain_verify()
    assert not result.ok
    assert f"entry #{entries[2].seq} is missing" in result.reason


def test_key_is_required_to_record(settings: Any) -> None:
    settings.ATRIUM_PLATFORM_AUDIT_KEY = ""
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="ATRIUM_PLATFORM_AUDIT_KEY"):
        platform_audit_record(actor="a", action="b", target="c")


@pytest.mark.parametrize(("given", "missing"), [
    ({}, "ATRIUM_PLATFORM_AUDIT_KEY"),
    ({"ATRIUM_PLATFORM_AUDIT_KEY": "p"}, "ATRIUM_AUDIT_CHECKPOINT_KEY"),
])
def test_production_refuses_to_start_without_the_audit_keys(given: dict[str, str], missing: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_") and k != "DJANGO_SECRET_KEY"}
    clean.update(DJANGO_SECRET_KEY="s", ATRIUM_ENCRYPTION_KEYS="k", DJANGO_SETTINGS_MODULE="config.settings.production",
                 **given)
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=clean, capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"atrium: {missing} is not set; production refuses to start without it.")


def test_admin_lists_entries_read_only_on_the_public_host_only(public_client: Any, client_a: Any, tenant_a: Any,
                                                                 in_tenant: Any, make_user: Any) -> None:
    from django.contrib.auth import get_user_model

    entry = platform_audit_record(actor="platform-root", action="catalog_change", target="model:claude-x")
    root = get_user_model().objects.create_superuser("platform-audit-reader", "r@example.com", "pw-Secret-123")
    public_client.force_login(root)
    listing = public_client.get("/admin/audit_platform/platformauditentry/")
    assert listing.status_code == 200 and b"catalog_change" in listing.content
    detail = public_client.get(f"/admin/audit_platform/platformauditentry/{entry.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert public_client.get("/admin/audit_platform/platformauditentry/add/").status_code == 403
    assert public_client.post(f"/admin/audit_platform/platformauditentry/{entry.pk}/delete/",
                              {"post": "yes"}).status_code == 403
    assert PlatformAuditEntry.objects.filter(pk=entry.pk).exists()
    tenant_admin = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(tenant_admin)
    assert client_a.get("/admin/audit_platform/platformauditentry/").status_code == 404

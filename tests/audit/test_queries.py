"""audit/queries.py round-trips: every column a chain walk reads comes back under its own name with the ORM's
value, for a tenant's chain and for the platform's; heads, redaction and the job lease agree with the ORM."""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction


def _decoded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON columns come back from raw SQL as text (Django decodes them for the ORM); the chain walks decode them
    the same way."""
    return [{k: json.loads(v) if k in ("metadata", "personal") and isinstance(v, str) else v for k, v in row.items()}
            for row in rows]


def test_tenant_entry_columns_round_trip(tenant_a: Any, in_tenant: Any, make_user: Any) -> None:
    from audit import queries
    from audit.chain import ENTRY_COLUMNS
    from audit.models import AuditEntry
    from audit.services import audit_record

    user = make_user(tenant_a)
    with in_tenant(tenant_a):
        entry = audit_record(event_type="round_trip", user=user, model="claude-haiku-5-5", input_tokens=11,
                             output_tokens=22, latency_ms=33, metadata={"k": "v"}, personal={"ip": "192.0.2.1"})
        rows = queries.chain_entries(queries.tenant_table(), ENTRY_COLUMNS, after_seq=entry.seq - 1, limit=1)
        orm = AuditEntry.objects.values(*ENTRY_COLUMNS).get(pk=entry.pk)
        assert _decoded(rows) == [orm]
        assert queries.chain_head(queries.tenant_table()) == (entry.seq, entry.mac)
        with transaction.atomic():
            assert queries.tenant_chain_lock_head() == (entry.seq, entry.mac)


def test_platform_entry_columns_round_trip(db: None) -> None:
    from audit import queries
    from audit.platform.chain import ENTRY_COLUMNS
    from audit.platform.models import PlatformAuditEntry
    from audit.platform.services import platform_audit_record

    entry = platform_audit_record(actor="platform:root", action="round_trip", target="tenant:alpha",
                                  tenant_schema="alpha", metadata={"n": 1})
    rows = queries.chain_entries(queries.platform_table(), ENTRY_COLUMNS, after_seq=entry.seq - 1, limit=5)
    assert _decoded(rows) == [PlatformAuditEntry.objects.values(*ENTRY_COLUMNS).get(pk=entry.pk)]
    assert queries.chain_head(queries.platform_table()) == (entry.seq, entry.mac)


def test_redaction_blanks_only_that_users_personal_columns(tenant_a: Any, in_tenant: Any, make_user: Any) -> None:
    from audit import queries
    from audit.models import AuditEntry
    from audit.services import audit_record

    alice, bob = make_user(tenant_a), make_user(tenant_a)
    with in_tenant(tenant_a):
        mine = [audit_record(event_type="x", user=alice, personal={"ip": "192.0.2.1"}) for _ in range(3)]
        theirs = audit_record(event_type="x", user=bob, personal={"ip": "192.0.2.2"})
        assert queries.entries_redact(int(alice.pk), 2) == 2
        assert queries.entries_redact(int(alice.pk), 5) == 1
        redacted = AuditEntry.objects.filter(pk__in=[e.pk for e in mine]).values("user_id", "personal", "redacted_at")
        assert all(r["user_id"] is None and r["personal"] == {} and r["redacted_at"] for r in redacted)
        kept = AuditEntry.objects.values("user_id", "personal", "redacted_at").get(pk=theirs.pk)
        assert kept["user_id"] == bob.pk and kept["personal"] and kept["redacted_at"] is None


def test_job_lease_is_taken_once(tenant_a: Any, in_tenant: Any) -> None:
    from audit import queries
    from audit.models import GdprJob

    with in_tenant(tenant_a):
        job = GdprJob.objects.create(kind=GdprJob.Kind.EXPORT)
        assert queries.gdpr_job_lease(str(job.pk), 60)
        assert not queries.gdpr_job_lease(str(job.pk), 60)  # a live lease
        job.refresh_from_db()
        assert job.status == GdprJob.Status.RUNNING and job.attempts == 1 and job.lease_until is not None

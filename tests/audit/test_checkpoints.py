"""Tampering as someone with database superuser rights would do it (triggers off, plain SQL), each case detected
by `verify_audit` against the signed checkpoints kept outside the chain's table, with a message naming the entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.chain import chain_verify, tenant_key
from audit.models import AuditEntry
from audit.platform.checkpoints import PLATFORM, chain_key_id, checkpoint_all, checkpoint_file, checkpoint_take
from audit.platform.models import ChainCheckpoint
from audit.services import audit_record
from tests.audit.tamper import as_replica, with_triggers_disabled

pytestmark = pytest.mark.django_db
ENTRIES = "audit_auditentry"


@pytest.fixture(autouse=True)
def checkpoint_dir(settings: Any, tmp_path: Path) -> Path:
    settings.ATRIUM_AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


def _write(n: int) -> list[AuditEntry]:
    return [audit_record(event_type="test_event", metadata={"n": i}, input_payload=f"prompt {i}") for i in range(n)]


def _checkpointed(n: int, capture: Any) -> list[AuditEntry]:
    """n new entries, then a verification (which checkpoints the intact chain, in the table and, at commit, in
    the file)."""
    entries = _write(n)
    with capture(execute=True):
        result = chain_verify()
    assert result.ok, str(result)
    assert result.head_seq == entries[-1].seq
    return entries


def _broken(schema: str, capsys: pytest.CaptureFixture[str]) -> str:
    """verify_audit fails (non-zero exit) and prints what it found; return its report."""
    connection.set_schema_to_public()
    with pytest.raises(CommandError, match=f"broken in: {schema}"):
        call_command("verify_audit", tenant=schema)
    return capsys.readouterr().err


def test_verification_checkpoints_the_head_in_the_table_and_the_file(tenant_a: Any, in_tenant: Any,
                                                                      django_capture_on_commit_callbacks: Any) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(3, django_capture_on_commit_callbacks)
        key_id = chain_key_id(tenant_key())
    row = ChainCheckpoint.objects.filter(chain=tenant_a.schema_name, key_id=key_id).order_by("-seq").first()
    assert row is not None and (row.seq, row.head_mac, row.reason) == (entries[-1].seq, entries[-1].mac, "verify")
    lines = [json.loads(line) for line in checkpoint_file(tenant_a.schema_name).read_text().splitlines()]
    assert lines[-1]["seq"] == entries[-1].seq and lines[-1]["signature"] == row.signature
    with in_tenant(tenant_a):  # head unchanged: nothing new to vouch for
        assert checkpoint_take(chain=tenant_a.schema_name, chain_key=tenant_key(), reason="test") is None
        assert chain_verify().checkpoint.seq == entries[-1].seq  # type: ignore[union-attr]


def test_truncate_is_refused_by_the_database(tenant_a: Any, in_tenant: Any) -> None:
    with in_tenant(tenant_a):
        _write(1)
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute("TRUNCATE audit_auditentry")
        assert AuditEntry.objects.exists()


def test_deleted_tail_is_detected(tenant_a: Any, in_tenant: Any, django_capture_on_commit_callbacks: Any,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(5, django_capture_on_commit_callbacks)
        as_replica(("DELETE FROM audit_auditentry WHERE seq >= %s", [entries[3].seq]))
        result = chain_verify()
        assert not result.ok and result.broken_seq == entries[3].seq
        assert (f"tail deleted: the chain ends at entry #{entries[2].seq} but the signed checkpoint" in result.reason
                and f"recorded head #{entries[4].seq}: entries #{entries[3].seq} to #{entries[4].seq} are missing"
                in result.reason)
        # The shortened chain is not blessed by a new checkpoint.
        assert checkpoint_take(chain=tenant_a.schema_name, chain_key=tenant_key(), reason="scheduled") is None
    assert f"entries #{entries[3].seq} to #{entries[4].seq} are missing" in _broken(tenant_a.schema_name, capsys)


def test_truncation_is_detected(tenant_a: Any, in_tenant: Any, django_capture_on_commit_callbacks: Any,
                                capsys: pytest.CaptureFixture[str]) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(3, django_capture_on_commit_callbacks)
        with_triggers_disabled(ENTRIES, "TRUNCATE audit_auditentry")
        assert not AuditEntry.objects.exists()
        result = chain_verify()
        assert not result.ok
        assert result.reason.startswith("truncated: the chain is empty but the signed checkpoint")
        assert f"recorded {entries[-1].seq} entries" in result.reason
    assert "truncated: the chain is empty" in _broken(tenant_a.schema_name, capsys)


def test_gap_in_sequence_numbers_is_detected(tenant_a: Any, in_tenant: Any,
                                             django_capture_on_commit_callbacks: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(5, django_capture_on_commit_callbacks)
        as_replica(("DELETE FROM audit_auditentry WHERE seq = %s", [entries[2].seq]))
        result = chain_verify()
        assert not result.ok and result.broken_seq == entries[2].seq
        assert result.reason == (f"gap in sequence numbers: entry #{entries[2].seq} is missing (deleted), next is "
                                 f"#{entries[3].seq}")
    assert f"entry #{entries[2].seq} is missing" in _broken(tenant_a.schema_name, capsys)


def test_forged_insert_without_the_key_is_detected(tenant_a: Any, in_tenant: Any,
                                                   django_capture_on_commit_callbacks: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(4, django_capture_on_commit_callbacks)
        target = entries[1]
        # Make room after the target, then slip in a copy claiming a different token count.
        with_triggers_disabled(
            ENTRIES,
            ("UPDATE audit_auditentry SET seq = seq + 100000 WHERE seq > %s", [target.seq]),
            ("UPDATE audit_auditentry SET seq = seq - 100000 + 1 WHERE seq > 100000", []),
            ("INSERT INTO audit_auditentry (seq, event_id, timestamp, event_type, actor, model, input_hash, "
             "output_hash, input_tokens, output_tokens, latency_ms, status, metadata, error, user_id, personal, "
             "subject_mac, prev_mac, mac) SELECT seq + 1, gen_random_uuid(), timestamp, event_type, actor, model, "
             "input_hash, output_hash, input_tokens, 5000, latency_ms, status, metadata, error, user_id, personal, "
             "subject_mac, mac, md5(random()::text) || md5(random()::text) FROM audit_auditentry WHERE seq = %s",
             [target.seq]),
        )
        result = chain_verify()
        assert not result.ok and result.broken_seq == target.seq + 1
        assert f"entry #{target.seq + 1}: MAC does not match its content" in result.reason
        # and the entry after it no longer links to its predecessor
        assert any(f.kind == "link" and f.seq == target.seq + 2 for f in result.findings)
    assert f"entry #{target.seq + 1}: MAC does not match" in _broken(tenant_a.schema_name, capsys)


def test_forged_insert_with_the_chain_key_is_caught_by_the_checkpoint(tenant_a: Any, in_tenant: Any,
                                                                      django_capture_on_commit_callbacks: Any) -> None:
    """Someone who also holds the tenant's chain key rewrites the chain so that every MAC is right: only the
    checkpoint, signed with a key they do not have, shows it."""
    from audit import chain

    with in_tenant(tenant_a):
        entries = _checkpointed(3, django_capture_on_commit_callbacks)
        key = tenant_key()
        first = entries[0].seq
        forged = []
        prev = entries[0].prev_mac
        for i, entry in enumerate([entries[0], None, *entries[1:]]):
            source = entry or entries[0]
            fields = {name: getattr(source, name) for name in chain.CHAINED}
            fields["seq"] = first + i
            if entry is None:
                fields["output_tokens"] = 5000
                fields["event_id"] = __import__("uuid").uuid4()
            mac = chain.entry_mac(key, prev, fields)
            forged.append((fields, prev, mac))
            prev = mac
        statements: list[Any] = [("DELETE FROM audit_auditentry WHERE seq >= %s", [first])]
        for fields, prev_mac, mac in forged:
            statements.append((
                "INSERT INTO audit_auditentry (seq, event_id, timestamp, event_type, actor, model, input_hash, "
                "output_hash, input_tokens, output_tokens, latency_ms, status, metadata, error, personal, "
                "subject_mac, prev_mac, mac) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, "
                "'{}'::jsonb, %s, %s, %s)",
                [fields["seq"], fields["event_id"], fields["timestamp"], fields["event_type"], fields["actor"],
                 fields["model"], fields["input_hash"], fields["output_hash"], fields["input_tokens"],
                 fields["output_tokens"], fields["latency_ms"], fields["status"], json.dumps(fields["metadata"]),
                 fields["error"], fields["subject_mac"], prev_mac, mac]))
        as_replica(*statements)
        result = chain_verify()
        assert not result.ok
        assert [f.kind for f in result.findings] == ["rewritten"]
        assert result.reason.startswith(f"entry #{entries[-1].seq} does not match the signed checkpoint")


def test_reordered_entries_are_detected(tenant_a: Any, in_tenant: Any, django_capture_on_commit_callbacks: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(4, django_capture_on_commit_callbacks)
        a, b = entries[1].seq, entries[2].seq
        as_replica(("UPDATE audit_auditentry SET seq = -1 WHERE seq = %s", [a]),
                   ("UPDATE audit_auditentry SET seq = %s WHERE seq = %s", [a, b]),
                   ("UPDATE audit_auditentry SET seq = %s WHERE seq = -1", [b]))
        result = chain_verify()
        assert not result.ok and result.broken_seq == a
        assert result.reason == (f"entry #{a} does not link to entry #{a - 1} (reordered, inserted or replaced "
                                 f"entries)")
    assert f"entry #{a} does not link to entry #{a - 1}" in _broken(tenant_a.schema_name, capsys)


def test_edited_field_is_detected(tenant_a: Any, in_tenant: Any, django_capture_on_commit_callbacks: Any,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(3, django_capture_on_commit_callbacks)
        with_triggers_disabled(ENTRIES, ("UPDATE audit_auditentry SET output_tokens = 1 WHERE seq = %s",
                                         [entries[1].seq]))
        result = chain_verify()
        assert not result.ok and result.broken_seq == entries[1].seq
        assert result.reason == (f"entry #{entries[1].seq}: MAC does not match its content (edited, or forged "
                                 f"without the key)")
    assert f"entry #{entries[1].seq}: MAC does not match" in _broken(tenant_a.schema_name, capsys)


def test_tail_deleted_with_the_checkpoint_rows_is_caught_by_the_file(tenant_a: Any, in_tenant: Any,
                                                                     django_capture_on_commit_callbacks: Any) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(4, django_capture_on_commit_callbacks)
        as_replica(("DELETE FROM audit_auditentry WHERE seq >= %s", [entries[2].seq]),
                   ("DELETE FROM public.audit_platform_chaincheckpoint WHERE chain = %s", [tenant_a.schema_name]))
        result = chain_verify()
        assert not result.ok
        kinds = {f.kind: f.message for f in result.findings}
        assert "checkpoint rows deleted" in kinds["checkpoint"]
        assert "(file)" in kinds["tail"] and f"recorded head #{entries[-1].seq}" in kinds["tail"]


def test_forged_checkpoint_is_reported(tenant_a: Any, in_tenant: Any,
                                       django_capture_on_commit_callbacks: Any) -> None:
    with in_tenant(tenant_a):
        entries = _checkpointed(2, django_capture_on_commit_callbacks)
        key_id = chain_key_id(tenant_key())
        ChainCheckpoint.objects.create(chain=tenant_a.schema_name, key_id=key_id, seq=entries[-1].seq + 50,
                                       head_mac="f" * 64, created_at="2026-01-01T00:00:00+00:00", reason="forged",
                                       signature="0" * 64)
        result = chain_verify()
        assert not result.ok
        assert result.reason.endswith(f"(head #{entries[-1].seq + 50}) has an invalid signature (forged or edited)")
        assert not any(f.kind == "tail" for f in result.findings)  # the forged row is not believed


def test_beat_task_checkpoints_every_chain(tenants: dict[str, Any], in_tenant: Any,
                                           django_capture_on_commit_callbacks: Any) -> None:
    from audit.platform.services import platform_audit_record

    platform_audit_record(actor="root", action="tenant_change", target="tenant:alpha")
    for tenant in tenants.values():
        with in_tenant(tenant):
            audit_record(event_type="beat_test")
    with django_capture_on_commit_callbacks(execute=True):
        assert checkpoint_all() >= 1 + len(tenants)
    chains = set(ChainCheckpoint.objects.filter(reason="scheduled").values_list("chain", flat=True))
    assert {PLATFORM, *[t.schema_name for t in tenants.values()]} <= chains
    for chain in (PLATFORM, *[t.schema_name for t in tenants.values()]):
        assert checkpoint_file(chain).exists()


def test_platform_tail_deletion_is_detected(django_capture_on_commit_callbacks: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from audit.platform.chain import platform_chain_verify
    from audit.platform.services import platform_audit_record

    entries = [platform_audit_record(actor="root", action="domain_change", target=f"domain:{i}") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        assert platform_chain_verify().ok
    as_replica(("DELETE FROM public.audit_platform_platformauditentry WHERE seq = %s", [entries[-1].seq]))
    with pytest.raises(CommandError, match="broken in: platform"):
        call_command("verify_audit", platform=True)
    assert f"entry #{entries[-1].seq} is missing" in capsys.readouterr().err



def test_edited_request_id_is_detected(tenant_a: Any, in_tenant: Any, django_capture_on_commit_callbacks: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The request id column (a call's idempotency key) is chained through the entry's metadata."""
    from audit.services import AuditEvent, audit_append_once

    with in_tenant(tenant_a):
        audit_append_once([AuditEvent(event_type="model_call", request_id=f"req_chained_{n}") for n in range(2)])
        entries = _checkpointed(1, django_capture_on_commit_callbacks)
        edited = entries[0].seq - 1  # the second model_call entry
        with_triggers_disabled(ENTRIES, ("UPDATE audit_auditentry SET request_id = 'req_other' WHERE seq = %s",
                                         [edited]))
        result = chain_verify()
        assert not result.ok and result.broken_seq == edited
        assert result.reason == (f"entry #{edited}: request id 'req_other' does not match its chained value "
                                 f"'req_chained_1' (edited)")
    assert f"entry #{edited}: request id 'req_other'" in _broken(tenant_a.schema_name, capsys)

"""The audit chain: append-only, tamper-evident, one chain under concurrent writers, redaction keeps it valid."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.chain import chain_verify
from audit.models import AuditEntry
from audit.services import audit_record, audit_redact_batch

pytestmark = pytest.mark.django_db


def _write(n: int, **extra: Any) -> list[AuditEntry]:
    return [audit_record(event_type="test_event", metadata={"n": i, "nested": {"b": 1, "a": [1, 2]}},
                         input_payload=f"prompt {i}", **extra) for i in range(n)]


def _sql(statement: str, params: list[Any] | None = None) -> None:
    """Tamper the way a DBA could: trigger disabled, plain SQL."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_append_only")
        cursor.execute(statement, params or [])
        cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER audit_append_only")


def test_fresh_chain_verifies_and_hashes_are_keyed(tenant_a: Any, in_tenant: Any) -> None:
    import hashlib

    with in_tenant(tenant_a):
        entries = _write(5)
        result = chain_verify()
        assert result.ok, str(result)
        assert result.entries >= 5
        plain = hashlib.sha256(b"prompt 0").hexdigest()
        assert entries[0].input_hash and entries[0].input_hash != plain
        assert entries[1].prev_mac == entries[0].mac


def test_same_prompt_hashes_differently_per_tenant(tenant_a: Any, tenant_b: Any, in_tenant: Any) -> None:
    with in_tenant(tenant_a):
        a = audit_record(event_type="x", input_payload="same prompt")
    with in_tenant(tenant_b):
        b = audit_record(event_type="x", input_payload="same prompt")
    assert a.input_hash != b.input_hash


@pytest.mark.parametrize("tamper", ["edit", "edit_personal", "delete", "reorder", "insert"])
def test_sql_tampering_is_detected(tamper: str, tenant_a: Any, in_tenant: Any) -> None:
    with in_tenant(tenant_a):
        entries = _write(6)
        target = entries[2]
        if tamper == "edit":
            _sql("UPDATE audit_auditentry SET output_tokens = 999 WHERE seq = %s", [target.seq])
        elif tamper == "edit_personal":
            _sql("UPDATE audit_auditentry SET personal = '{\"ip\": \"10.9.9.9\"}' WHERE seq = %s", [target.seq])
        elif tamper == "delete":
            _sql("DELETE FROM audit_auditentry WHERE seq = %s", [target.seq])
        elif tamper == "reorder":
            a, b = entries[2].seq, entries[3].seq
            _sql("UPDATE audit_auditentry SET seq = -1 WHERE seq = %s", [a])
            _sql("UPDATE audit_auditentry SET seq = %s WHERE seq = %s", [a, b])
            _sql("UPDATE audit_auditentry SET seq = %s WHERE seq = -1", [b])
        else:
            _sql("UPDATE audit_auditentry SET seq = seq + 1000 WHERE seq > %s", [target.seq])
            _sql("INSERT INTO audit_auditentry (seq, event_id, timestamp, event_type, actor, model, input_hash, "
                 "output_hash, input_tokens, output_tokens, latency_ms, status, metadata, error, user_id, personal, "
                 "subject_mac, prev_mac, mac) SELECT seq + 1, gen_random_uuid(), timestamp, event_type, actor, model, "
                 "input_hash, output_hash, input_tokens, output_tokens, latency_ms, status, metadata, error, user_id, "
                 "personal, subject_mac, mac, mac FROM audit_auditentry WHERE seq = %s", [target.seq])
        result = chain_verify()
        assert not result.ok
        assert result.broken_seq is not None and result.broken_seq <= target.seq + 1
        with pytest.raises(CommandError, match="broken"):
            call_command("verify_audit", tenant=tenant_a.schema_name)


def test_orm_and_database_refuse_changes(tenant_a: Any, in_tenant: Any) -> None:
    with in_tenant(tenant_a):
        entry = _write(1)[0]
        entry.status = "error"
        with pytest.raises(PermissionError):
            entry.save()
        with pytest.raises(PermissionError):
            entry.delete()
        with pytest.raises(PermissionError):
            AuditEntry.objects.filter(pk=entry.pk).delete()
        with pytest.raises(PermissionError):
            AuditEntry.objects.filter(pk=entry.pk).update(status="x")
        for statement in ("DELETE FROM audit_auditentry WHERE id = %s",
                          "UPDATE audit_auditentry SET status = 'error' WHERE id = %s",
                          "UPDATE audit_auditentry SET personal = '{}', redacted_at = now(), model = 'x' "
                          "WHERE id = %s"):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
                cur.execute(statement, [entry.pk])


def test_redaction_blanks_personal_fields_and_chain_still_verifies(tenant_a: Any, in_tenant: Any,
                                                                   make_user: Any) -> None:
    user = make_user(tenant_a)
    with in_tenant(tenant_a):
        audit_record(event_type="login", user=user, personal={"username": user.username, "ip": "10.1.2.3"})
        _write(2)
        assert audit_redact_batch(user.pk, 100) == 1
        entry = AuditEntry.objects.filter(event_type="login").order_by("-seq").first()
        assert entry is not None and entry.user_id is None and entry.personal == {} and entry.actor
        assert chain_verify().ok


def test_concurrent_writers_keep_one_chain(tenants: dict[str, Any], committed: None) -> None:
    from django_tenants.utils import tenant_context

    tenant = tenants["alpha"]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with tenant_context(tenant):
                for i in range(25):
                    with transaction.atomic():
                        audit_record(event_type="concurrent", metadata={"i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    with tenant_context(tenant):
        before = AuditEntry.objects.count()
    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with tenant_context(tenant):
        seqs = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))
        assert len(seqs) == before + 150
        assert seqs == list(range(1, len(seqs) + 1))
        assert chain_verify().ok


def test_admin_shows_entries_read_only(tenant_a: Any, in_tenant: Any, make_user: Any, client_a: Any) -> None:
    admin_user = make_user(tenant_a, "admin", is_staff=True)
    with in_tenant(tenant_a):
        entry = audit_record(event_type="admin_view_test", metadata={"k": "v"})
        client_a.force_login(admin_user)
    listing = client_a.get("/admin/audit/auditentry/?event_type=admin_view_test")
    assert listing.status_code == 200 and b"admin_view_test" in listing.content
    detail = client_a.get(f"/admin/audit/auditentry/{entry.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert client_a.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client_a.get("/admin/audit/auditentry/add/").status_code == 403
    with in_tenant(tenant_a):
        assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_normalise_returns_json_native_values_as_they_are_and_converts_the_rest_as_jsonb_reads_them() -> None:
    """An entry's metadata made of JSON's own types is chained as it is (no JSON round trip); tuples, non-string
    keys, enums, dates and lazy strings still come out as jsonb will read them back, so the MAC on write equals
    the one on verify."""
    import enum
    import json
    from datetime import date

    from django.utils.functional import lazy

    from audit.chain import canonical, normalise

    class Level(enum.IntEnum):
        HIGH = 2

    native = {"source": "api", "attempts": [{"target": "anthropic", "ms": 3, "ok": True, "share": 0.5}],
              "region": None, "deep": [[[{"x": 1}]]]}
    assert normalise(native) is native
    lazy_text = lazy(lambda: "text", str)()
    assert normalise({7: "seven"}) == {"7": "seven"}
    converted = {"pair": (1, 2), "level": Level.HIGH, "day": date(2020, 1, 2), "lazy": lazy_text,
                 "nested": [{"pair": (3, 4)}], "inf": float("inf")}
    out = normalise(converted)
    assert out == json.loads(canonical(converted))
    assert out["pair"] == [1, 2] and type(out["level"]) is int
    assert out["day"] == "2020-01-02" and type(out["lazy"]) is str and out["nested"] == [{"pair": [3, 4]}]
    too_deep: Any = 1
    for _ in range(40):
        too_deep = [too_deep]
    assert normalise(too_deep) == too_deep


def _odd_events() -> list[Any]:
    """Events whose fields exercise every way a value reaches the canonical JSON: non-ASCII and control
    characters, non-string keys, tuples, enums, dates, lazy strings, floats, deep nesting, no user, no request id,
    a long error, a non-string status."""
    import enum
    from datetime import UTC, date, datetime

    from django.utils.functional import lazy

    from audit.services import AuditEvent

    class Level(enum.IntEnum):
        HIGH = 2

    deep: Any = {"x": 1}
    for _ in range(20):
        deep = [deep]
    when = datetime(2026, 12, 7, 3, 4, 5, 0, tzinfo=UTC)  # no microseconds: still written with them
    metadata = [
        {"source": "api", "attempts": [{"target": "anthropic", "latency_ms": 1.8, "ok": True}], "region": None},
        {"naïve": "zürich \u2028 \u0001 \"quoted\" \\ back", "emoji": "\U0001f600"},
        {"ints": {7: "seven", 10: "ten"}, "pair": (1, 2), "level": Level.HIGH, "day": date(2020, 1, 2),
         "lazy": lazy(lambda: "text", str)(), "float": 1e-7, "big": 2**70},
        {"deep": deep, "neg": -0.0, "empty": {}, "list": []},
        {},
    ]
    return [AuditEvent(event_type="model_call", user_id=uid, personal=personal, model="claude-é",
                       input_hash=f"{i:064x}", output_hash="", input_tokens=i, output_tokens=2 * i, latency_ms=3,
                       status=status, metadata=meta, error=error, timestamp=when, request_id=rid)
            for i, (uid, personal, meta, status, error, rid) in enumerate([
                (7, {"username": "ann", "ip": "10.0.0.1"}, metadata[0], "success", "", "req_1"),
                (None, {}, metadata[1], "error", "x" * 3000, ""),
                (8, {"user_agent": "Mozilla/5.0 (ü)", "codes": {2: "b", 10: "a"}}, metadata[2], 500, "boom", "req_2"),
                (9, {"ip": "::1"}, metadata[3], "incomplete", "é\n", "req_3"),
                (7, {"username": "ann"}, metadata[4], "success", "", "req_1"),  # a duplicate request id: skipped
                (10, {"username": "erased"}, {"k": "v"}, "success", "", "req_4"),
            ])]


def test_rows_are_chained_as_chain_verify_recomputes_them() -> None:
    """audit_rows' and audit_rows_json's MACs (made from texts serialised once) are the MACs chain_verify and the
    exports recompute from the fields (audit.chain.entry_mac, subject_mac), and the JSON rows carry the values
    those MACs covered."""
    import json
    from datetime import datetime

    from audit import chain
    from audit.rows import audit_rows, audit_rows_json

    key = b"k" * 32
    events = _odd_events()
    head = (41, "a" * 64)
    for rows in (audit_rows(events, key=key, head=head, present={"req_0"}, erased=frozenset({10})),
                 json.loads(audit_rows_json(events, key=key, head=head, present={"req_0"}, erased=frozenset({10}))[0])):
        assert [r["seq"] for r in rows] == [42, 43, 44, 45, 46]
        assert [r["request_id"] for r in rows] == ["req_1", None, "req_2", "req_3", "req_4"]
        prev = head[1]
        for row in rows:
            fields = dict(row)
            if isinstance(fields["timestamp"], str):
                fields["timestamp"] = datetime.fromisoformat(fields["timestamp"])
            # what jsonb hands back: the JSON values of the row
            fields["metadata"] = json.loads(json.dumps(fields["metadata"]))
            personal = json.loads(json.dumps(row["personal"]))
            assert row["prev_mac"] == prev
            assert row["mac"] == chain.entry_mac(key, prev, fields)
            assert row["subject_mac"] == chain.subject_mac(key, row["user_id"], personal)
            assert row["actor"] == chain.pseudonym(key, events[0].user_id if row["seq"] == 42 else row["user_id"]) \
                or row["seq"] in (43, 46)
            prev = row["mac"]
        assert rows[4]["user_id"] is None and rows[4]["personal"] == {}  # erased: redacted
        assert rows[4]["actor"] == chain.pseudonym(key, 10)
        assert rows[1]["error"] == "x" * 2000 and rows[2]["status"] == 500
        assert rows[2]["metadata"]["ints"] == {"7": "seven", "10": "ten"} and rows[2]["metadata"]["pair"] == [1, 2]
        assert rows[2]["personal"] == {"codes": {"2": "b", "10": "a"}, "user_agent": "Mozilla/5.0 (ü)"}


def test_texts_made_ahead_are_the_texts_the_rows_would_make(monkeypatch: Any) -> None:
    """An event whose metadata and personal texts were made ahead (AuditEvent.json_texts, for the journal line)
    gives audit_rows_json the very rows it makes without them, erased users redacted all the same."""
    import copy
    import itertools

    from audit import rows
    from audit.rows import audit_rows_json

    key = b"k" * 32
    ahead = [copy.copy(e) for e in _odd_events()]
    for event in ahead:
        event.json_texts()
    assert all(e.metadata_json is not None and e.personal_json is not None for e in ahead)
    made = []
    for events in (_odd_events(), ahead):
        counter = itertools.count()
        monkeypatch.setattr(rows, "uuid4_text", lambda c=counter: f"00000000-0000-4000-8000-{next(c):012d}")
        made.append(audit_rows_json(events, key=key, head=(3, "c" * 64), present=set(), erased=frozenset({10})))
    assert made[0] == made[1]


def test_an_event_made_outside_its_tenant_digests_the_session_under_that_tenants_key(
        tenant_a: Any, tenant_b: Any, in_tenant: Any) -> None:
    """audit_event(tenant=...) (the gateway's call records) keys the session digest and the payload hashes by the
    given tenant's audit key, whichever tenant is active: the same values as with that tenant active."""
    from types import SimpleNamespace

    from audit.chain import keyed_hash, tenant_key
    from audit.services import audit_event, tenant_key_of

    request = SimpleNamespace(session=SimpleNamespace(session_key="s3ss10n"), META={"REMOTE_ADDR": "10.0.0.1"})
    with in_tenant(tenant_a):
        key_a = tenant_key()
        expected = audit_event(event_type="model_call", request=request).personal
    assert expected["session_id"] == keyed_hash(key_a, "session:s3ss10n")[:32]
    with in_tenant(tenant_b):
        assert tenant_key_of(tenant_a) == key_a != tenant_key()
        made = audit_event(event_type="model_call", request=request, tenant=tenant_a, input_payload="p")
        assert made.personal == expected
        assert made.hashed(tenant_key_of(tenant_a)).input_hash == keyed_hash(key_a, "p")


def test_remembered_personal_texts_and_subject_macs_are_the_ones_made_afresh() -> None:
    """audit.services.personal_text and audit.rows._subject_mac remember their answers: equal fields of other
    types (1, True, 1.0, "1") never share a text, unhashable fields are made each time, and the cache's bound holds."""
    from audit import chain, rows, services

    cases: list[dict[str, Any]] = [{"ip": "10.0.0.1", "username": "é\"x"}, {"a": "1"}, {"a": 1}, {"a": True},
                                   {"a": 1.0}, {"a": "1"}, {"a": ["x"]}, {"a": {"b": "c"}}, {}, {"ip": "10.0.0.1"}]
    for _ in range(2):
        for personal in cases:
            assert services.personal_text(personal) == chain.json_text(personal)[1]
            for user_id in (None, 7):
                text = chain.json_text(personal)[1]
                assert rows._subject_mac(b"k", user_id, text) == chain.subject_mac_text(b"k", user_id, text)
    assert rows._subject_mac(b"other", 7, "{}") == chain.subject_mac_text(b"other", 7, "{}")
    for n in range(services._PERSONAL_TEXTS_MAX + 10):
        services.personal_text({"ip": str(n)})
    assert len(services._personal_texts) <= services._PERSONAL_TEXTS_MAX

"""A record holding text PostgreSQL cannot store (NUL: `text` refuses it and `jsonb` its \\u0000 escape; a lone
surrogate: no UTF-8) is written with those characters made U+FFFD (config.stored_text, docs/decisions.md), through
every writer (record_tx's JSON rows, audit_append's model rows, a journal line replayed), its MACs computed on what
is stored: it can neither be refused forever (retried, replayed at each start) nor hold the records behind it."""

from __future__ import annotations

import uuid
from typing import Any

from tests.inference.test_recorder_writes import _record

NUL_EVENT = {"error": "upstream said \x00 then \udc80", "metadata": {"ua\x00": "x\x00y", "n": ["a\x00", 1]},
             "personal": {"user_agent": "curl\x00/8", "ip": "10.0.0.9"}}


def _poisoned(tenant: Any, user_id: int | None) -> Any:
    record = _record(tenant, user_id, f"req_{uuid.uuid4().hex}")
    record.audit.error = NUL_EVENT["error"]
    record.audit.metadata = dict(NUL_EVENT["metadata"])
    record.audit.personal = dict(NUL_EVENT["personal"])
    return record


def _check_stored(tenant: Any, in_tenant: Any, request_id: str) -> None:
    from audit.chain import chain_verify
    from audit.models import AuditEntry
    from inference.models import UsageRecord

    with in_tenant(tenant):
        entry = AuditEntry.objects.get(request_id=request_id)
        assert entry.error == "upstream said \ufffd then \ufffd"
        assert entry.metadata["ua\ufffd"] == "x\ufffdy" and entry.metadata["n"] == ["a\ufffd", 1]
        assert entry.personal["user_agent"] == "curl\ufffd/8"
        assert UsageRecord.objects.filter(request_id=request_id).count() == 1
        assert chain_verify().ok


def test_a_record_with_nul_is_written_and_does_not_hold_the_others(in_tenant: Any, tenant_a: Any,
                                                                   make_user: Any) -> None:
    from inference.records import records_write

    user = make_user(tenant_a)
    before, poison, after = (_record(tenant_a, user.pk, f"req_{uuid.uuid4().hex}"), _poisoned(tenant_a, user.pk),
                             _record(tenant_a, user.pk, f"req_{uuid.uuid4().hex}"))
    assert records_write([before, poison, after]) == []  # the two-message commit
    _check_stored(tenant_a, in_tenant, poison.request_id)
    again = _poisoned(tenant_a, user.pk)
    assert records_write([again]) == []  # the one-message commit (this process knows the head)
    _check_stored(tenant_a, in_tenant, again.request_id)


def test_a_journaled_record_with_nul_is_replayed_once_and_written(in_tenant: Any, tenant_a: Any,
                                                                  make_user: Any) -> None:
    from inference.records import record_decode, record_encode, records_write

    record = _poisoned(tenant_a, make_user(tenant_a).pk)
    with in_tenant(tenant_a):
        line = record_encode(record)
    assert records_write([record_decode(line)]) == []
    _check_stored(tenant_a, in_tenant, record.request_id)


def test_audit_append_stores_nul_as_the_replacement_character(in_tenant: Any, tenant_a: Any) -> None:
    from audit.chain import chain_verify
    from audit.services import audit_append, audit_event

    with in_tenant(tenant_a):
        entry, = audit_append([audit_event(event_type="login_failed\x00", user_id=None, model="m\x00",
                                           status="refused\udc80", **NUL_EVENT)])
        entry.refresh_from_db()
        assert (entry.event_type, entry.model, entry.status) == ("login_failed\ufffd", "m\ufffd", "refused\ufffd")
        assert entry.error == "upstream said \ufffd then \ufffd" and entry.personal["user_agent"] == "curl\ufffd/8"
        assert chain_verify().ok


def test_stored_text() -> None:
    from config.stored_text import stored, stored_text, unstorable

    plain = "é \\u0000 \U0001f600"
    assert stored_text(plain) is plain and stored({"a": [plain]}) == {"a": [plain]}
    assert stored_text("a\x00b\ud800") == "a\ufffdb\ufffd"
    assert stored({"k\x00": ("v\x00", 2, None)}) == {"k\ufffd": ("v\ufffd", 2, None)}
    assert unstorable('"\\u0000"') and unstorable("\udfff") and not unstorable("\\\\u00")

"""record_tx's statements as server-side prepared statements (session pooling): a connection prepares a tenant's
statements in the first message it sends for that tenant (no extra round trip), and the messages after it execute
them; a prepared statement that is gone is prepared again after one failed commit (the writer retries it), nothing
is written twice and the chain verifies; behind a transaction-mode pooler nothing is prepared."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from tests.inference.test_recorder_lead import _model_call, count_messages


def _held(names: dict[str, str]) -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name = ANY(%s)", [list(names.values())])
        return {str(row[0]) for row in cursor.fetchall()}


def test_a_connection_prepares_a_tenants_statements_once_in_its_first_message(
        committed: None, tenant_a: Any, monkeypatch: Any) -> None:
    from django.db import connection
    from django_tenants.utils import schema_context

    from audit.chain import chain_verify
    from audit.models import AuditEntry
    from inference import record_tx
    from inference.models import UsageRecord

    connection.close()  # a fresh connection: it holds no prepared statement
    messages = count_messages(monkeypatch)
    names = record_tx._names(tenant_a.schema_name)
    record_tx._heads.pop(tenant_a.schema_name, None)
    record_tx._cooling.pop(tenant_a.schema_name, None)
    records = [_model_call(tenant_a) for _ in range(5)]

    record_tx.record_tx_commit(records[:1])
    assert len(messages) == 2  # the PREPAREs went in the first message, not in one of their own
    assert b"PREPARE" in messages[0] and all(b"PREPARE" not in m for m in messages[1:])
    assert _held(names) == set(names.values())
    messages.clear()
    record_tx.record_tx_commit(records[1:3])  # the head is known: the one message, executing its statement
    assert len(messages) == 1 and b"EXECUTE" in messages[0] and b"PREPARE" not in messages[0]

    with connection.cursor() as cursor:  # someone deallocates one: the next commit fails, the one after prepares it
        cursor.execute(f'DEALLOCATE "{names["one"]}"')
    with pytest.raises(Exception, match="does not exist"):
        record_tx.record_tx_commit(records[3:])
    messages.clear()
    record_tx.record_tx_commit(records[3:])
    assert any(b"PREPARE" in m for m in messages)
    assert _held(names) == set(names.values())
    record_tx.record_tx_commit(records)  # a retry of all: nothing written twice
    with schema_context(tenant_a.schema_name):
        ids = [r.request_id for r in records]
        assert AuditEntry.objects.filter(request_id__in=ids).count() == 5
        assert UsageRecord.objects.filter(request_id__in=ids).count() == 5
        assert chain_verify(checkpoints=False).ok


def test_behind_a_transaction_pooler_nothing_is_prepared(committed: None, tenant_a: Any, monkeypatch: Any) -> None:
    from django.db import connection
    from django_tenants.utils import schema_context

    from audit.models import AuditEntry
    from inference import record_tx

    connection.close()
    messages = count_messages(monkeypatch)
    records = [_model_call(tenant_a) for _ in range(2)]
    with override_settings(DATABASE_POOL_MODE="transaction"):
        record_tx._heads.pop(tenant_a.schema_name, None)
        record_tx.record_tx_commit(records[:1])
        record_tx.record_tx_commit(records[1:])
    assert messages and all(b"PREPARE" not in m and b"EXECUTE" not in m for m in messages)
    assert not _held(record_tx._names(tenant_a.schema_name))
    with schema_context(tenant_a.schema_name):
        assert AuditEntry.objects.filter(request_id__in=[r.request_id for r in records]).count() == 2


def test_a_connection_holding_its_share_of_statements_prepares_no_more(
        committed: None, tenant_a: Any, monkeypatch: Any) -> None:
    """A connection keeps a bounded number of tenants' statements (their plans take the backend's memory): beyond
    it, a tenant's records are written by the unprepared statements, as before."""
    from django.db import connection
    from django_tenants.utils import schema_context

    from audit.models import AuditEntry
    from inference import record_tx

    connection.close()
    messages = count_messages(monkeypatch)
    monkeypatch.setattr(record_tx, "_PREPARED_MAX", 0)
    records = [_model_call(tenant_a) for _ in range(2)]
    record_tx._heads.pop(tenant_a.schema_name, None)
    record_tx.record_tx_commit(records[:1])
    record_tx.record_tx_commit(records[1:])
    assert messages and all(b"PREPARE" not in m and b"EXECUTE" not in m for m in messages)
    assert not _held(record_tx._names(tenant_a.schema_name))
    with schema_context(tenant_a.schema_name):
        assert AuditEntry.objects.filter(request_id__in=[r.request_id for r in records]).count() == 2

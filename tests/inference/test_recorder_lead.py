"""Leader/follower recording (BatchWriter's `lead`, inference.records.records_lead): a call that finds the writer
idle writes its own records in its own thread; calls arriving meanwhile are batched by the writer thread; a failed
or timed-out lead is retried by the writer, never dropped; on PostgreSQL the lead is bounded, so a locked audit
table cannot hold the request."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from inference.recorder import BatchWriter


def count_messages(monkeypatch: Any) -> list[bytes]:
    """Every message record_tx sends through its client cursor, as bytes, in order."""
    import psycopg

    from inference import record_tx

    messages: list[bytes] = []

    class Counting(psycopg.ClientCursor):  # type: ignore[type-arg]
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            messages.append(query if isinstance(query, bytes) else str(query).encode())
            return super().execute(query, params, **kwargs)

    monkeypatch.setattr(record_tx.psycopg, "ClientCursor", Counting)
    return messages


class _Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_thread: list[tuple[str, list[int]]] = []

    def write(self, batch: list[int]) -> list[int]:
        with self.lock:
            self.by_thread.append((threading.current_thread().name, list(batch)))
        return []


def test_an_idle_writer_lets_the_caller_write_its_own_record(background: Any) -> None:
    log = _Log()
    writer: BatchWriter[int] = BatchWriter(f"l{uuid.uuid4().hex[:6]}", log.write, lead=log.write)
    ticket = writer.submit(1)
    assert ticket.done  # written before submit returned: no hand-off to the writer thread and back
    assert log.by_thread == [(threading.current_thread().name, [1])]


def test_calls_arriving_while_one_leads_are_batched_by_the_writer(background: Any) -> None:
    log = _Log()
    leading = threading.Event()
    release = threading.Event()

    def lead(batch: list[int]) -> list[int]:
        leading.set()
        release.wait(30)
        return log.write(batch)

    writer: BatchWriter[int] = BatchWriter(f"l{uuid.uuid4().hex[:6]}", log.write, lead=lead)
    first = threading.Thread(target=writer.submit, args=(0,), name="caller-0")
    first.start()
    assert leading.wait(30)
    tickets = [writer.submit(n) for n in range(1, 6)]
    assert all(t.wait(30) for t in tickets)  # not held up by the leader
    release.set()
    first.join(30)
    assert writer.flush(timeout=30)
    threads = {name for name, batch in log.by_thread if 0 not in batch}
    assert threads == {f"atrium-{writer.name}"}  # the followers went to the writer thread
    assert ("caller-0", [0]) in log.by_thread
    assert sorted(n for _, batch in log.by_thread for n in batch) == list(range(6))


def test_a_failed_lead_is_retried_by_the_writer_never_dropped(background: Any) -> None:
    log = _Log()

    def lead(batch: list[int]) -> list[int]:
        raise ConnectionError("the database went away")

    writer: BatchWriter[int] = BatchWriter(f"l{uuid.uuid4().hex[:6]}", log.write, lead=lead)
    ticket = writer.submit(7)
    assert ticket.wait(30)
    assert log.by_thread == [(f"atrium-{writer.name}", [7])]


def test_a_lead_that_cannot_lead_here_hands_over_without_counting_a_failure(background: Any) -> None:
    log = _Log()
    writer: BatchWriter[int] = BatchWriter(f"l{uuid.uuid4().hex[:6]}", log.write, lead=lambda batch: None)
    assert writer.submit(3).wait(30)
    assert log.by_thread == [(f"atrium-{writer.name}", [3])]
    assert not writer.degraded("")


def test_on_postgresql_a_locked_audit_table_times_the_lead_out_and_the_writer_writes_it_later(
        background: Any, committed: None, tenant_a: Any) -> None:
    """The request thread's own commit gives up after ATRIUM_RECORD_COMMIT_WAIT_MS while another session holds
    the audit table; nothing of it is committed then; the writer commits it once the lock is gone."""
    import psycopg
    from django.db import connection
    from django.db import connections as db_connections

    from access.quotas import Reservation
    from audit.models import AuditEntry
    from audit.services import AuditEvent
    from inference.records import CallRecord, records_lead, records_write
    from inference.services import UsageCount

    background.ATRIUM_RECORD_COMMIT_WAIT_MS = 300
    request_id = f"req_{uuid.uuid4().hex}"
    record = CallRecord(
        tenant=tenant_a, request_id=request_id,
        usage=UsageCount(None, "claude-haiku-5-5", "anthropic", 5, 5, False, request_id=request_id,
                         charged_tokens=10),
        audit=AuditEvent(event_type="model_call", input_payload={"m": request_id}, request_id=request_id),
        reservation=Reservation(tokens=0), used_tokens=10, settle=True)
    db = connection.settings_dict
    outcome: dict[str, Any] = {}
    with psycopg.connect(host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432,
                         user=db.get("USER") or "postgres", dbname=db["NAME"]) as locker:
        locker.execute(f'LOCK TABLE "{tenant_a.schema_name}".audit_auditentry IN ACCESS EXCLUSIVE MODE')

        def request_thread() -> None:  # a connection outside the test's transaction, as a request thread has
            started = time.monotonic()
            try:
                outcome["left"] = records_lead([record])
            finally:
                outcome["seconds"] = time.monotonic() - started
                db_connections.close_all()

        thread = threading.Thread(target=request_thread)
        thread.start()
        thread.join(60)
        assert not thread.is_alive()  # it did not wait for the lock to go
        locker.rollback()
    assert outcome["left"] == [record]  # not written: the writer's retries take it from here
    from django_tenants.utils import schema_context

    with schema_context(tenant_a.schema_name):
        assert AuditEntry.objects.filter(request_id=request_id).count() == 0  # rolled back, nothing half-written
    assert records_write([record]) == []  # the writer's retry, once the lock is gone
    with schema_context(tenant_a.schema_name):
        assert AuditEntry.objects.filter(request_id=request_id).count() == 1


def test_on_postgresql_the_batch_transaction_stores_every_value_as_given_and_the_chain_verifies(
        committed: None, tenant_a: Any) -> None:
    """record_tx sends a batch's entries and usage as JSON (one parameter each): text with quotes, backslashes,
    accents, emoji and a user agent that looks like SQL is stored exactly, the time to the microsecond, and the
    chain still verifies."""
    from datetime import UTC, datetime

    from django_tenants.utils import schema_context

    from access.quotas import Reservation
    from audit.chain import chain_verify
    from audit.models import AuditEntry
    from audit.services import AuditEvent
    from inference import record_tx
    from inference.models import UsageRecord
    from inference.records import CallRecord
    from inference.services import UsageCount

    odd = "it's a \"test\" \\ with é, 漢字, 😀 and '); DROP TABLE audit_auditentry; --"
    at = datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)  # long past: no quota window counts it
    records = []
    for n in range(3):
        request_id = f"req_{uuid.uuid4().hex}"
        records.append(CallRecord(
            tenant=tenant_a, request_id=request_id,
            usage=UsageCount(None, "claude-haiku-5-5", "anthropic", 5 + n, 7, n == 2, request_id=request_id,
                             day=at.date(), charged_tokens=12 + n, cost_micros=10**12 + n, api_key="atr_x'y"),
            audit=AuditEvent(event_type="model_call", personal={"user_agent": odd}, model="claude-haiku-5-5",
                             input_hash="a" * 64, output_hash="", input_tokens=5 + n, output_tokens=7,
                             status="error" if n == 2 else "success", metadata={"note": odd, "n": [n, None, True]},
                             error=odd if n == 2 else "", timestamp=at, request_id=request_id),
            reservation=Reservation(tokens=0), used_tokens=12 + n, settle=True))
    record_tx.record_tx_commit(records)
    record_tx.record_tx_commit(records)  # a retry: nothing written twice
    with schema_context(tenant_a.schema_name):
        entries = list(AuditEntry.objects.filter(request_id__in=[r.request_id for r in records]).order_by("seq"))
        usage = {u.request_id: u for u in UsageRecord.objects.filter(request_id__in=[r.request_id for r in records])}
        assert [e.request_id for e in entries] == [r.request_id for r in records]
        for n, (entry, record) in enumerate(zip(entries, records, strict=True)):
            assert entry.personal == {"user_agent": odd} and entry.metadata["note"] == odd
            assert entry.metadata["n"] == [n, None, True] and entry.metadata["request_id"] == record.request_id
            assert entry.timestamp == at and entry.error == (odd if n == 2 else "")
            assert (entry.input_tokens, entry.output_tokens, entry.status) == (5 + n, 7, record.audit.status)
            row = usage[record.request_id]
            assert (row.day, row.input_tokens, row.charged_tokens, row.error, row.cost_micros, row.api_key) == (
                at.date(), 5 + n, 12 + n, n == 2, 10**12 + n, "atr_x'y")
        assert chain_verify(checkpoints=False).ok


def _model_call(tenant: Any, user_id: int | None = None) -> Any:
    from access.quotas import Reservation
    from audit.services import AuditEvent
    from inference.records import CallRecord
    from inference.services import UsageCount

    request_id = f"req_{uuid.uuid4().hex}"
    return CallRecord(
        tenant=tenant, request_id=request_id,
        usage=UsageCount(user_id, "claude-haiku-5-5", "anthropic", 5, 5, False, request_id=request_id,
                         charged_tokens=10),
        audit=AuditEvent(event_type="model_call", user_id=user_id, personal={"ip": "10.0.0.9"},
                         input_hash="b" * 64, output_hash="", metadata={"n": 1}, request_id=request_id),
        reservation=Reservation(tokens=0), used_tokens=10, settle=True)


def test_on_postgresql_a_process_that_wrote_the_chains_head_commits_in_one_message(
        committed: None, tenant_a: Any, monkeypatch: Any) -> None:
    """After its own commit a process knows the chain's head: its next commit is one message (the entries chained
    after that head, written only if under the lock it is still the head). When another writer appended
    meanwhile, when a request id is already written, or when the user's erasure has started, that message writes
    nothing and the two messages write the records as before: each once, redacted when erased, the chain intact."""
    from django_tenants.utils import schema_context

    from audit.chain import chain_verify
    from audit.models import AuditEntry
    from audit.services import audit_record, erasure_start
    from inference import record_tx
    from inference.models import UsageRecord

    messages = count_messages(monkeypatch)
    from django.contrib.auth import get_user_model

    with schema_context(tenant_a.schema_name):  # committed, left behind (a unique name)
        user = get_user_model().objects.create_user(username=f"onemsg-{uuid.uuid4().hex[:8]}")
    record_tx._heads.pop(tenant_a.schema_name, None)
    record_tx._cooling.pop(tenant_a.schema_name, None)

    def commit(*records: Any) -> int:
        messages.clear()
        record_tx.record_tx_commit(list(records))
        return len(messages)

    first, second, third = (_model_call(tenant_a, user.pk) for _ in range(3))
    assert commit(first) == 2  # the head is not known yet: two messages
    assert commit(second, third) == 1  # it is now: one
    with schema_context(tenant_a.schema_name):
        audit_record(event_type="admin_action", metadata={"by": "someone else"})  # another writer appends
    fourth = _model_call(tenant_a, user.pk)
    assert commit(fourth) == 3  # the guess was wrong: nothing written by it, then the two messages
    record_tx._cooling.pop(tenant_a.schema_name, None)
    assert commit(fourth) == 3  # a retry of a written record: nothing written twice
    record_tx._cooling.pop(tenant_a.schema_name, None)
    with schema_context(tenant_a.schema_name):
        erasure_start(user.pk)
    fifth = _model_call(tenant_a, user.pk)
    # the erasure took the lock and wrote no entry, so the head is still known: the guard sees the erasure
    assert commit(fifth) == 3
    records = [first, second, third, fourth, fifth]
    with schema_context(tenant_a.schema_name):
        entries = {e.request_id: e for e in AuditEntry.objects.filter(request_id__in=[r.request_id for r in records])}
        assert len(entries) == 5 and UsageRecord.objects.filter(
            request_id__in=[r.request_id for r in records]).count() == 5
        assert entries[fifth.request_id].user_id is None and entries[fifth.request_id].personal == {}
        assert entries[fourth.request_id].user_id == user.pk
        seqs = sorted(e.seq for e in entries.values())
        assert seqs[1:3] == [seqs[0] + 1, seqs[0] + 2]  # the one-message commit chained right after the first
        assert chain_verify(checkpoints=False).ok


def test_on_postgresql_the_one_message_commit_waits_for_the_chains_append_lock(
        committed: None, tenant_a: Any, monkeypatch: Any) -> None:
    """The one message takes the chain's append lock itself (not through atrium_audit_lock_head, whose head it
    does not need): while another session holds that lock (as atrium_audit_lock_head and audit_record take it),
    the one message waits for it, and, bounded, gives up with nothing written; once the lock is free it commits
    the record once, chained after the head."""
    import psycopg
    from django.db import connection
    from django_tenants.utils import schema_context

    from audit.chain import chain_verify
    from audit.models import AuditEntry
    from inference import record_tx

    messages = count_messages(monkeypatch)
    record_tx._heads.pop(tenant_a.schema_name, None)
    record_tx._cooling.pop(tenant_a.schema_name, None)
    first, second = _model_call(tenant_a), _model_call(tenant_a)
    record_tx.record_tx_commit([first])  # two messages: the process knows the head now
    db = connection.settings_dict
    with psycopg.connect(host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432,
                         user=db.get("USER") or "postgres", dbname=db["NAME"]) as locker:
        locker.execute(f'SET LOCAL search_path = "{tenant_a.schema_name}", public')
        locker.execute("SELECT head_seq FROM atrium_audit_lock_head()")  # holds the lock until its rollback
        messages.clear()
        with record_tx.bounded(300), pytest.raises(psycopg.errors.QueryCanceled):
            record_tx.record_tx_commit([second])
        assert len(messages) == 1 and b"pg_advisory_xact_lock" in messages[0]  # the one message, blocked
        locker.rollback()
    with schema_context(tenant_a.schema_name):
        assert not AuditEntry.objects.filter(request_id=second.request_id).exists()
    messages.clear()
    with record_tx.bounded(3000):
        record_tx.record_tx_commit([second])
    assert len(messages) == 1
    with schema_context(tenant_a.schema_name):
        seqs = {e.request_id: e.seq for e in AuditEntry.objects.filter(
            request_id__in=[first.request_id, second.request_id])}
        assert seqs[second.request_id] == seqs[first.request_id] + 1
        assert chain_verify(checkpoints=False).ok


def test_on_postgresql_the_one_message_binds_its_values_itself_and_they_arrive_unchanged(
        committed: None, tenant_a: Any, monkeypatch: Any) -> None:
    """The one message carries its values as literals it quotes itself (record_tx._bound, not psycopg's binding):
    quotes, backslashes, percent signs, SQL-looking text and non-ASCII arrive as they were chained (the entry
    reads back the same and the chain's MACs verify); where psycopg's quoting has no E'' form to choose (no
    backslash), the message is byte for byte the one psycopg would have sent."""
    import dataclasses

    import psycopg
    from django.db import connection
    from django_tenants.utils import schema_context

    from audit.chain import chain_verify
    from audit.models import AuditEntry
    from inference import record_tx

    sent: list[tuple[bytes, Any]] = []

    class Counting(psycopg.ClientCursor):  # type: ignore[type-arg]
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            sent.append((query if isinstance(query, bytes) else str(query).encode(), params))
            return super().execute(query, params, **kwargs)

    monkeypatch.setattr(record_tx.psycopg, "ClientCursor", Counting)
    record_tx._heads.pop(tenant_a.schema_name, None)
    record_tx._cooling.pop(tenant_a.schema_name, None)
    record_tx.record_tx_commit([_model_call(tenant_a)])  # two messages: the head is known after it
    tricky = "it's a \\ back'slash \"q\" %s %% '); DROP TABLE audit_auditentry; -- \u00fcn\u00ef \u20ac \U0001f600"
    record = _model_call(tenant_a)
    record.audit = dataclasses.replace(record.audit, metadata={"n": tricky, tricky: [tricky, 1]})
    sent.clear()
    record_tx.record_tx_commit([record])
    assert len(sent) == 1 and sent[0][1] is None  # the one message, its values bound here
    with schema_context(tenant_a.schema_name):
        entry = AuditEntry.objects.get(request_id=record.request_id)
        assert entry.metadata["n"] == tricky and entry.metadata[tricky] == [tricky, 1]
        assert chain_verify(checkpoints=False).ok
    raw = connection.connection
    message = b"EXECUTE x(%s, %s, %s, %s, %s, %s); SELECT '100%%'"
    values = [12, "ab" * 32, '{"req_1"}', "{}", '[{"a": "it\'s %s \u20ac"}]', "[]"]
    assert record_tx._bound(raw, message, values) == psycopg.ClientCursor(raw).mogrify(message, values).encode()


def test_the_settlements_of_leaders_are_made_together_not_one_per_call(background: Any) -> None:
    """A leader's record owes a settlement (the writer's after-commit work); callers leading one after another
    (c=1) have theirs made together, at most every ATRIUM_RECORDER_SETTLE_EVERY_S, not one writer wake-up and one
    Redis call each; every one is made all the same, soon."""
    background.ATRIUM_RECORDER_SETTLE_EVERY_S = 0.2
    log = _Log()
    settled: list[int] = []
    owed: list[int] = []

    def after() -> bool:
        with log.lock:
            settled.append(len(owed))
        return True

    def lead(batch: list[int]) -> list[int]:
        with log.lock:
            owed.extend(batch)
        return log.write(batch)

    writer: BatchWriter[int] = BatchWriter(f"l{uuid.uuid4().hex[:6]}", log.write, after=after, lead=lead)
    writer.start()
    time.sleep(0.3)  # the writer's first, idle, after-commit run is behind it
    settled.clear()
    started = time.monotonic()
    for n in range(20):
        assert writer.submit(n).done  # led: written by the caller
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 10
    while (not settled or settled[-1] < 20) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert settled and settled[-1] == 20  # every leader's settlement made
    assert len(settled) <= elapsed / 0.2 + 3  # together: not one per call (20 before)

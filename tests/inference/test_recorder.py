"""The batch writer behind /v1 call records (inference.recorder) and the idempotent writes it calls
(inference.records): group commit, retry-never-drop, supervision, the journal, exactly-once records."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from typing import Any

from inference.record_journal import journal_records
from inference.recorder import BatchWriter
from tests.inference.conftest import string_codec


def _name() -> str:
    return f"t{uuid.uuid4().hex[:6]}"




def test_records_are_written_in_batches_in_order_off_the_callers_thread(background: Any) -> None:
    batches: list[list[int]] = []
    threads: set[str] = set()

    def write(batch: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        batches.append(list(batch))
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    tickets = [writer.submit(n) for n in range(300)]
    assert writer.flush(timeout=30)
    assert all(t.done for t in tickets)
    assert [n for batch in batches for n in batch] == list(range(300))
    assert len(batches) < 300 / 10  # batched, not one write per record
    assert threading.current_thread().name not in threads


def test_a_ticket_is_done_only_once_its_record_is_written(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 0
    release = threading.Event()

    def write(batch: list[int]) -> list[int]:
        release.wait(30)
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    ticket = writer.submit(1)
    assert not ticket.wait(0.3)  # the write has not finished: the response must not complete
    release.set()
    assert ticket.wait(30)


def test_a_full_batch_is_written_without_waiting_out_the_linger(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 60_000
    background.ATRIUM_RECORDER_BATCH = 5
    written = threading.Event()
    sizes: list[int] = []

    def write(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        written.set()
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    for n in range(5):
        writer.submit(n)
    assert written.wait(timeout=30), "a full batch waited for the linger"
    assert sizes == [5]


def test_a_waiting_caller_still_gets_the_configured_linger_for_group_commit(background: Any) -> None:
    # Records whose callers wait for the commit are gathered for ATRIUM_RECORDER_LINGER_MS, as documented: a
    # second call arriving within it joins the first one's transaction instead of the writer taking the first
    # one alone (the shortcut of the journaled linger must not apply to them).
    background.ATRIUM_RECORDER_LINGER_MS = 5_000
    batches: list[list[int]] = []

    def write(batch: list[int]) -> list[int]:
        batches.append(list(batch))
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    writer.submit(0)
    time.sleep(0.1)
    writer.submit(1)
    assert writer.flush(timeout=30)  # cuts the linger short
    assert batches == [[0, 1]]


def test_failing_records_are_retried_until_written_never_dropped(background: Any, caplog: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 0
    written: list[str] = []
    failures = {"b:bad": 4}  # fails four times, then the database takes it

    def write(batch: list[str]) -> list[str]:
        left = []
        for item in batch:
            if failures.get(item, 0) > 0:
                failures[item] -= 1
                left.append(item)
            else:
                written.append(item)
        return left

    writer: BatchWriter[str] = BatchWriter(_name(), write, string_codec())
    tickets = [writer.submit(item) for item in ("a:1", "b:bad", "a:2")]
    assert tickets[0].wait(30) and tickets[2].wait(30)  # the good records do not wait for the bad one
    assert writer.degraded("b") or tickets[1].done
    assert not writer.degraded("a")
    assert tickets[1].wait(30)
    assert sorted(written) == ["a:1", "a:2", "b:bad"]  # each once
    assert not writer.degraded("b")
    assert "record_retry" in caplog.text


def test_a_raising_write_is_retried_not_dropped(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 0
    calls = itertools.count()
    written: list[int] = []

    def write(batch: list[int]) -> list[int]:
        if next(calls) < 2:
            raise ConnectionError("database unreachable")
        written.extend(batch)
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    ticket = writer.submit(7)
    assert ticket.wait(30)
    assert written == [7]


def test_a_saturated_writer_makes_callers_wait_for_room(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 0
    background.ATRIUM_RECORDER_MAX_PENDING = 1
    release = threading.Event()
    written: list[int] = []

    def write(batch: list[int]) -> list[int]:
        release.wait(30)
        written.extend(batch)
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    writer.submit(1)
    submitted = threading.Event()
    threading.Thread(target=lambda: (writer.submit(2), submitted.set()), daemon=True).start()
    assert not submitted.wait(0.5)  # no room: the caller waits (nothing is dropped, nothing written twice)
    release.set()
    assert submitted.wait(30)
    assert writer.flush(timeout=30)
    assert written == [1, 2]


class _Die(BaseException):
    """Kills the writer thread (as an unexpected error escaping its loop would)."""


def test_a_dead_writer_thread_is_restarted_with_its_records(background: Any, caplog: Any) -> None:
    from inference import metrics

    background.ATRIUM_RECORDER_LINGER_MS = 0
    died = threading.Event()
    written: list[int] = []

    def write(batch: list[int]) -> list[int]:
        if not died.is_set():
            died.set()
            raise _Die()
        written.extend(batch)
        return []

    before = metrics.RECORDER_RESTARTS._value.get()
    writer: BatchWriter[int] = BatchWriter(_name(), write)
    first = writer.submit(1)
    assert died.wait(30)
    time.sleep(0.2)  # the thread is gone
    second = writer.submit(2)  # finds the writer dead and starts another with the record it held
    assert first.wait(30) and second.wait(30)
    assert sorted(written) == [1, 2]
    assert metrics.RECORDER_RESTARTS._value.get() == before + 1
    assert "recorder_restarted" in caplog.text


def test_a_dead_processs_journal_is_replayed_exactly_once(background: Any) -> None:
    import fcntl
    import os

    name = _name()
    journal_dir = background.ATRIUM_RECORD_JOURNAL_DIR
    os.makedirs(journal_dir)
    path = os.path.join(journal_dir, f"{name}-99999-dead.journal")
    with open(path, "w") as handle:  # what a killed process left: two records and a torn line
        handle.write(json.dumps("a:1") + "\n" + json.dumps("b:2") + "\n" + '"a:3')
    live = open(os.path.join(journal_dir, f"{name}-1-live.journal"), "w")  # noqa: SIM115 - a live process's
    fcntl.flock(live.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    live.write(json.dumps("a:live") + "\n")
    live.flush()
    written: list[str] = []
    writer: BatchWriter[str] = BatchWriter(name, lambda batch: written.extend(batch) or [], string_codec())
    writer.start()
    deadline = time.monotonic() + 30
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(path)  # replayed, then removed
    assert sorted(written) == ["a:1", "b:2"]  # the live process's journal is left alone
    live.close()


def test_journaled_records_survive_until_written_then_the_journal_empties(background: Any) -> None:

    background.ATRIUM_RECORDER_LINGER_MS = 0
    release = threading.Event()
    written: list[str] = []

    def write(batch: list[str]) -> list[str]:
        if not release.is_set():
            return batch  # the database does not take it yet
        written.extend(batch)
        return []

    writer: BatchWriter[str] = BatchWriter(_name(), write, string_codec())
    ticket = writer.submit("a:1")
    assert not ticket.wait(0.3)
    writer.journal("a:1")
    journal = writer._journal_path
    with open(journal, "rb") as handle:
        records, _torn = journal_records(handle.read())
    assert [json.loads(record) for record in records] == ["a:1"]  # durable before the response went on
    release.set()
    assert ticket.wait(30)
    assert written == ["a:1"]
    with open(journal, "rb") as handle:
        assert journal_records(handle.read()) == ([], 0)  # rewound: nothing to replay


# --- the idempotent writes --------------------------------------------------------------------------------

def _record(tenant: Any, user_id: int | None, request_id: str, reservation: Any = None, tokens: int = 30) -> Any:
    from access.quotas import Reservation
    from audit.services import AuditEvent
    from inference.records import CallRecord
    from inference.services import UsageCount

    return CallRecord(
        tenant=tenant, request_id=request_id,
        usage=UsageCount(user_id, "claude-haiku-5-5", "anthropic", tokens - 10, 10, False, request_id=request_id,
                         charged_tokens=tokens),
        audit=AuditEvent(event_type="model_call", user_id=user_id, personal={"ip": "10.0.0.9"},
                         input_payload={"m": request_id}, request_id=request_id),
        reservation=reservation or Reservation(tokens=0), used_tokens=tokens, settle=True)


def test_a_record_written_twice_counts_once(in_tenant: Any, tenant_a: Any, make_user: Any) -> None:
    from audit.models import AuditEntry
    from inference.models import UsageDaily, UsageRecord
    from inference.records import records_write

    user = make_user(tenant_a)
    record = _record(tenant_a, user.pk, f"req_{uuid.uuid4().hex}")
    assert records_write([record]) == []
    assert records_write([record, record]) == []  # a retry, a replay: no-ops
    with in_tenant(tenant_a):
        assert AuditEntry.objects.filter(request_id=record.request_id).count() == 1
        assert UsageRecord.objects.filter(request_id=record.request_id).count() == 1
        daily = UsageDaily.objects.get(user_id=user.pk, model="claude-haiku-5-5", provider="anthropic")
        assert (daily.requests, daily.input_tokens, daily.output_tokens) == (1, 20, 10)


def test_a_partly_failed_multi_tenant_batch_neither_loses_nor_duplicates(in_tenant: Any, tenant_a: Any,
                                                                         tenant_b: Any, make_user: Any) -> None:
    from django.db import connection

    from audit.models import AuditEntry
    from inference.models import UsageRecord
    from inference.records import records_write

    user_a, user_b = make_user(tenant_a), make_user(tenant_b)
    a, b = _record(tenant_a, user_a.pk, f"req_{uuid.uuid4().hex}"), _record(tenant_b, user_b.pk,
                                                                               f"req_{uuid.uuid4().hex}")
    with in_tenant(tenant_b), connection.cursor() as cursor:
        cursor.execute("CREATE FUNCTION fail_insert() RETURNS trigger LANGUAGE plpgsql AS "
                       "$$ BEGIN RAISE EXCEPTION 'audit inserts fail'; END $$")
        cursor.execute("CREATE TRIGGER fail_insert BEFORE INSERT ON audit_auditentry "
                       "FOR EACH ROW EXECUTE FUNCTION fail_insert()")
    assert records_write([a, b]) == [b]  # tenant A committed, tenant B's part failed
    with in_tenant(tenant_b), connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER fail_insert ON audit_auditentry")
    assert records_write([a, b]) == []  # the retry of the whole batch
    with in_tenant(tenant_a):
        assert AuditEntry.objects.filter(request_id=a.request_id).count() == 1
        assert UsageRecord.objects.filter(request_id=a.request_id).count() == 1
    with in_tenant(tenant_b):
        assert AuditEntry.objects.filter(request_id=b.request_id).count() == 1
        assert UsageRecord.objects.filter(request_id=b.request_id).count() == 1


def test_settlement_is_idempotent_and_survives_an_emptied_redis(in_tenant: Any, tenant_a: Any) -> None:
    from access.quotas import Reservation, epoch_key, quota_rebuild, quota_settle_many, settled_key, tpd_key
    from config.redis import redis_client

    client = redis_client()
    schema = f"q{uuid.uuid4().hex[:8]}"

    class T:
        schema_name = schema
        tokens_per_day = 10_000
        effective_user_tokens_per_day = None

    from datetime import UTC, datetime

    day = datetime.now(UTC).strftime("%Y%m%d")  # the day quota_rebuild rebuilds (a fixed day failed after it)
    key = tpd_key(schema, day)
    client.set(epoch_key(schema), "e1")
    client.set(key, 100)  # a reservation of 100 tokens
    reservation = Reservation(tokens=100, day_keys=[key], schema=schema, epoch="e1", day=day)
    quota_settle_many([("r1", reservation, 30)])
    quota_settle_many([("r1", reservation, 30)])  # a retry after a Redis error: no second refund
    assert int(client.get(key)) == 30
    # Redis loses everything; a call reserved before is settled after the rebuild: counted once, for what it used.
    client.delete(key, epoch_key(schema), settled_key(schema, day))
    late = Reservation(tokens=100, day_keys=[key], schema=schema, epoch="e1", day=day)
    quota_rebuild(tenant=T(), recorded=lambda _day: iter([("r1", None, 30), ("r2", None, 40)]))
    assert client.get(epoch_key(schema)) not in (None, b"e1")
    quota_settle_many([("r2", late, 40), ("r3", late, 5)])  # r2 was already counted by the rebuild
    assert int(client.get(key)) == 30 + 40 + 5
    client.delete(key, epoch_key(schema), settled_key(schema, day))


def test_usage_counts_of_one_batch_are_summed_per_row(in_tenant: Any, tenant_a: Any, make_user: Any) -> None:
    from inference.models import UsageDaily
    from inference.services import UsageCount, usage_add_many

    user = make_user(tenant_a)
    with in_tenant(tenant_a):
        usage_add_many([UsageCount(user.pk, "claude-haiku-5-5", "anthropic", 10, 5, False, request_id="u1"),
                        UsageCount(user.pk, "claude-haiku-5-5", "anthropic", 1, 2, True, request_id="u2"),
                        UsageCount(user.pk, "claude-haiku-5-5", "bedrock", 7, 7, False, request_id="u3")])
        counted = usage_add_many([UsageCount(user.pk, "claude-haiku-5-5", "anthropic", 100, 0, False,
                                             request_id="u4"),
                                  UsageCount(user.pk, "claude-haiku-5-5", "anthropic", 10, 5, False,
                                             request_id="u1"),  # again: not counted twice
                                  UsageCount(999_999_999, "claude-haiku-5-5", "anthropic", 3, 3, False,
                                             request_id="u5")])  # a deleted user
        assert counted == {"u4", "u5"}
        rows = {(r.user_id, r.provider): (r.requests, r.errors, r.input_tokens, r.output_tokens)
                for r in UsageDaily.objects.filter(model="claude-haiku-5-5")}
    assert rows[(user.pk, "anthropic")] == (3, 1, 111, 7)
    assert rows[(user.pk, "bedrock")] == (1, 0, 7, 7)
    assert rows[(None, "anthropic")][0] >= 1  # counted anonymously, not lost with the batch


def test_a_batch_of_audit_entries_chains_and_verifies(in_tenant: Any, tenant_a: Any) -> None:
    from audit.chain import chain_verify
    from audit.models import AuditEntry
    from audit.services import audit_append, audit_event

    with in_tenant(tenant_a):
        before = AuditEntry.objects.count()
        entries = audit_append([audit_event(event_type="model_call", user_id=7, personal={"ip": "10.0.0.1"},
                                            input_payload={"n": n}, metadata={"n": n}) for n in range(20)])
        assert [e.seq for e in entries] == list(range(entries[0].seq, entries[0].seq + 20))
        assert all(b.prev_mac == a.mac for a, b in itertools.pairwise(entries))
        assert AuditEntry.objects.count() == before + 20
        assert chain_verify().ok


def test_a_journaled_record_round_trips_without_its_prompt(in_tenant: Any, tenant_a: Any, make_user: Any) -> None:
    from audit.models import AuditEntry
    from inference.records import record_decode, record_encode, records_write

    user = make_user(tenant_a)
    record = _record(tenant_a, user.pk, f"req_{uuid.uuid4().hex}")
    with in_tenant(tenant_a):
        line = record_encode(record)
    assert record.request_id in line and '"m"' not in line  # hashes only: no prompt on disk
    assert records_write([record_decode(line)]) == []
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(request_id=record.request_id)
        from audit.chain import tenant_key
        from audit.services import content_hash

        assert entry.input_hash == content_hash(tenant_key(), {"m": record.request_id})


def test_a_journal_line_of_the_previous_format_is_replayed(in_tenant: Any, tenant_a: Any, make_user: Any) -> None:
    """Journal lines written before the metadata and personal fields went in as canonical texts (the audit entry
    in the middle of the line, its metadata without the request id) are read and written as before; a line of
    today's format carries the canonical texts and is written the same way."""
    from audit.chain import canonical_text, chain_verify
    from audit.models import AuditEntry
    from inference.records import _fields, _hashed, record_decode, record_encode, records_write

    user = make_user(tenant_a)
    old, new = (_record(tenant_a, user.pk, f"req_{uuid.uuid4().hex}") for _ in range(2))
    for record in (old, new):
        record.audit.metadata = {"source": "api", "attempts": [{"target": "anthropic", "ms": 1.5}], "é": "ü"}
    with in_tenant(tenant_a):
        event = _hashed(old)
        audit = _fields(event)
        audit["timestamp"] = event.timestamp.isoformat()
        usage = _fields(old.usage)
        usage["day"] = old.usage.day.isoformat() if old.usage.day else None
        old_line = json.dumps({"tenant": old.tenant.schema_name, "request_id": old.request_id, "usage": usage,
                               "audit": audit, "reservation": _fields(old.reservation), "used_tokens": old.used_tokens,
                               "settle": old.settle, "budget": None}, separators=(",", ":"), default=str)
        new_line = record_encode(new)
    assert json.loads(new_line)["audit"]["metadata"] == {**new.audit.metadata, "request_id": new.request_id}
    assert canonical_text({**new.audit.metadata, "request_id": new.request_id}) in new_line
    assert records_write([record_decode(old_line), record_decode(new_line)]) == []
    with in_tenant(tenant_a):
        for record in (old, new):
            entry = AuditEntry.objects.get(request_id=record.request_id)
            assert entry.metadata == {**record.audit.metadata, "request_id": record.request_id}
            assert entry.personal == {"ip": "10.0.0.9"} and entry.user_id == user.pk
        assert chain_verify(checkpoints=False).ok

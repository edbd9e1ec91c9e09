"""The idempotent writes behind the batch writer (inference.records): a record written twice counts once, a
partly failed multi-tenant batch neither loses nor duplicates, settlement survives an emptied Redis, the journal
line round-trips without the prompt (and the previous format still replays). The writer itself: test_recorder.py."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime
from typing import Any


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


def test_a_calls_metrics_are_counted_once_by_the_write_of_its_records(in_tenant: Any, tenant_a: Any,
                                                                      make_user: Any) -> None:
    """The gateway's metrics of a call go with its record and are counted when the record goes to the database
    (the batch writer, off the request thread), once: neither a retry after a failed commit nor a replay of its
    journal line counts it again (the line does not carry them: the process that served the call counted it)."""
    from prometheus_client import REGISTRY

    from inference.records import Counts, record_decode, record_encode, records_write

    user = make_user(tenant_a)
    source = f"t{uuid.uuid4().hex[:8]}"  # labels of this test only
    records = [_record(tenant_a, user.pk, f"req_{uuid.uuid4().hex}") for _ in range(3)]
    target = f"{source}-bedrock"
    for record, status, failovers in zip(records, ("success", "success", "error"), ((), (target,), ()), strict=True):
        record.counts = Counts(tenant_a.schema_name, source, status, 0.02, 20, 10, failovers)

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"tenant": tenant_a.schema_name, **labels}) or 0.0

    with in_tenant(tenant_a):
        line = record_encode(records[0])
    assert records_write(records) == []
    assert records_write(records) == []  # a retry: no-op, not counted again
    assert records_write([record_decode(line)]) == []  # a replay: not counted either
    assert sample("atrium_model_requests_total", source=source, status="success") == 2
    assert sample("atrium_model_requests_total", source=source, status="error") == 1
    assert sample("atrium_model_request_seconds_count", source=source) == 3
    assert abs(sample("atrium_model_request_seconds_sum", source=source) - 0.06) < 1e-9
    assert sample("atrium_model_request_seconds_bucket", source=source, le="0.01") == 0
    assert sample("atrium_model_request_seconds_bucket", source=source, le="0.025") == 3
    assert sample("atrium_failovers_total", target=target) == 1


def test_a_batchs_latencies_land_in_the_buckets_observe_puts_them_in() -> None:
    """records_count increments a histogram's sum and buckets once a batch: the same samples as one observe a
    call, bounds included (an amount equal to a bound is in that bound's bucket)."""
    from prometheus_client import CollectorRegistry, Histogram

    from inference.records import _observe_many

    amounts = [0.0, 0.005, 0.0051, 0.01, 0.3, 7.0, 120.0, 121.0, 0.005]
    registry = CollectorRegistry()
    one, many = (Histogram(name, "t", ["x"], registry=registry, buckets=(0.005, 0.01, 0.25, 0.5, 120))
                 for name in ("one", "many"))
    for amount in amounts:
        one.labels("a").observe(amount)
    _observe_many(many.labels("a"), amounts)

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        return [(s.name[len(name):], s.labels, round(s.value, 9)) for metric in registry.collect()
                if metric.name == name for s in metric.samples if not s.name.endswith("_created")]

    assert samples("one") == samples("many") and samples("one")


def test_request_ids_with_quotes_and_backslashes_are_found_again(in_tenant: Any, tenant_a: Any,
                                                                 make_user: Any) -> None:
    """record_tx sends the batch's request ids as one array literal it quotes itself (_text_array): an id holding
    quotes, a backslash, commas, braces or spaces (a client's X-Request-Id) is still found by the idempotency
    check, so a retry writes nothing twice."""
    from audit.models import AuditEntry
    from inference.models import UsageRecord
    from inference.record_tx import _text_array
    from inference.records import records_write

    assert _text_array([]) == "{}" and _text_array(['a"b\\c']) == '{"a\\"b\\\\c"}'
    user = make_user(tenant_a)
    awkward = [f'req "{uuid.uuid4().hex}" \\ {{a,b}} NULL é', f"req_{uuid.uuid4().hex},x"]
    records = [_record(tenant_a, user.pk, request_id) for request_id in awkward]
    assert records_write(records) == []
    assert records_write(records) == []  # the one-message commit (the head is known)
    assert records_write([records[1], records[0]]) == []
    with in_tenant(tenant_a):
        for request_id in awkward:
            assert AuditEntry.objects.filter(request_id=request_id).count() == 1
            assert UsageRecord.objects.filter(request_id=request_id).count() == 1

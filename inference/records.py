"""A model call's records (usage, audit entry, quota settlement): what they are, how they are written exactly once,
and how the gateway waits for them to be durable before the response completes (docs/decisions.md).

`records_write` writes a batch: per tenant one transaction (the audit entries and the usage ledger, both keyed by
request id, so a retry is a no-op), then that tenant's quota settlements (idempotent too). It returns the records
it could not write; the batch writer (inference.recorder) retries them until they are written.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from django.db import connection, transaction
from django_tenants.utils import tenant_context

from access.budgets import BudgetReservation, budget_settle_many
from access.quotas import Reservation, quota_settle_many
from audit.services import AuditEvent, audit_append_once, tenant_key_of
from config import jsonfast
from config.settings_once import setting_flag, setting_number
from inference import metrics, record_tx
from inference.errors import InferenceError
from inference.recorder import BatchWriter, Codec, RecordNotWritten, Ticket
from inference.services import UsageCount, usage_add_many

logger = logging.getLogger(__name__)


class RecordsUnavailable(InferenceError):
    """The call's records cannot be made durable, and the tenant's policy is to refuse rather than serve."""

    status = 503
    error_type = "api_error"

    def __init__(self) -> None:
        super().__init__("Atrium cannot record calls right now, and this organisation does not serve calls it cannot "
                         "record. Retry in a few seconds.")


class Counts(NamedTuple):
    """A call's metrics (inference.metrics), counted once its records go to the database (records_count)."""

    tenant: str
    source: str
    status: str
    latency_s: float
    input_tokens: int
    output_tokens: int
    failovers: tuple[str, ...]  # the targets that failed over


@dataclass
class CallRecord:
    """What a finished (or failed) call leaves behind: its usage, its audit entry and its quota settlement."""

    tenant: Any
    request_id: str
    usage: UsageCount
    audit: AuditEvent
    reservation: Reservation
    used_tokens: int
    settle: bool  # False: release the whole reservation (nothing was produced)
    budget: BudgetReservation | None = None  # money held against the call's budgets (access.budgets)
    # Not journaled: a record replayed from a dead process's journal is not counted (its process served it).
    counts: Counts | None = None

    @property
    def charged(self) -> int:
        return self.used_tokens if self.settle else 0


def records_write(records: list[CallRecord], persist: Callable[[], None] | None = None) -> list[CallRecord]:
    """Write calls' records, each tenant's in one transaction (with the caller's own writes, `persist`, which
    then fail with it). Returns the records not written; the committed ones wait in `_unsettled` for their quota
    settlement (settle_pending), which the batch writer runs once their responses are released."""
    failed, committed = _records_commit(records, persist)
    with _unsettled_lock:
        _unsettled.extend(committed)
    return failed


_children: dict[tuple[Any, ...], Any] = {}


def _labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, remembered (labels() validates and locks on every call)."""
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def _observe_many(histogram: Any, amounts: list[float]) -> None:
    """`histogram.observe(amount)` for each amount, in one increment of the sum and one of each bucket hit (each
    an mmap write under a lock in multiprocess mode, two an observe). Reads prometheus_client's Histogram
    internals (the pinned 0.26: _upper_bounds, _buckets, _sum); observes one by one should they change."""
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if not isinstance(bounds, list) or not isinstance(buckets, list) or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    hits = [0] * len(bounds)
    for amount in amounts:
        hits[bisect_left(bounds, amount)] += 1  # observe's bucket: the first whose bound is >= the amount (+Inf last)
    total.inc(sum(amounts))
    for bucket, count in zip(buckets, hits, strict=True):
        if count:
            bucket.inc(count)


def records_count(records: list[CallRecord]) -> None:
    """Count the calls of `records` in the metrics, each once (a record retried is not counted again): the
    counters and the latency histogram's sum and buckets incremented once per label for the whole batch (each
    increment is an mmap write under a lock in multiprocess mode). Counted when the records go to the database,
    whether or not that commit succeeds: a database outage does not hide the calls served meanwhile."""
    requests: dict[tuple[str, str, str], int] = {}
    latencies: dict[tuple[str, str], list[float]] = {}
    tokens: dict[tuple[str, str], int] = {}
    failovers: dict[tuple[str, str], int] = {}
    for record in records:
        counts = record.counts
        if counts is None:
            continue
        record.counts = None
        tenant, source = counts.tenant, counts.source
        key = (tenant, source, counts.status)
        requests[key] = requests.get(key, 0) + 1
        latencies.setdefault((tenant, source), []).append(counts.latency_s)
        for direction, count in (("input", counts.input_tokens), ("output", counts.output_tokens)):
            tokens[(tenant, direction)] = tokens.get((tenant, direction), 0) + count
        for target in counts.failovers:
            failovers[(tenant, target)] = failovers.get((tenant, target), 0) + 1
    for (tenant, source), amounts in latencies.items():
        _observe_many(_labelled(metrics.LATENCY, tenant, source), amounts)
    for (tenant, source, status), count in requests.items():
        _labelled(metrics.REQUESTS, tenant, source, status).inc(count)
    for (tenant, direction), count in tokens.items():
        _labelled(metrics.TOKENS, tenant, direction).inc(count)
    for (tenant, target), count in failovers.items():
        _labelled(metrics.FAILOVERS, tenant, target).inc(count)


def _records_commit(records: list[CallRecord],
                    persist: Callable[[], None] | None = None) -> tuple[list[CallRecord], list[CallRecord]]:
    """(records not written, records committed)."""
    try:
        records_count(records)
    except Exception:  # the metrics never stand in the way of the records
        logger.warning("the metrics of %d calls could not be counted", len(records), exc_info=True)
    by_tenant: dict[str, list[CallRecord]] = {}
    for record in records:
        by_tenant.setdefault(record.tenant.schema_name, []).append(record)
    failed: list[CallRecord] = []
    committed: list[CallRecord] = []
    for schema, group in by_tenant.items():
        try:
            if persist is None and record_tx.usable():
                record_tx.record_tx_commit(group)  # two round trips (inference/record_tx.py)
            else:
                with tenant_context(group[0].tenant), transaction.atomic():
                    if persist is not None:
                        persist()
                    appended = audit_append_once([r.audit for r in group])
                    usage_add_many([r.usage for r in group], anonymous=appended.erased)
        except Exception:
            if persist is not None:
                raise
            logger.warning("record_retry: the records of %d calls of %s were not committed", len(group), schema,
                           exc_info=True)
            failed.extend(group)
            continue
        # Settled only after the commit: a rebuild of the counters reads committed usage (access.quotas). The
        # records are durable now; a settlement that fails is retried on its own (idempotent).
        committed.extend(group)
    return failed, committed


_unsettled: list[CallRecord] = []  # committed records whose quota settlement has not gone through yet
_unsettled_lock = threading.Lock()
# One settle_pending at a time: a caller that finds the list empty while another's batch is still on its way to
# Redis waits for that outcome (the exit's settlement must not report done and let the process leave first).
_settling = threading.Lock()


def _settle(records: list[CallRecord]) -> None:
    """Quota and budget settlements of committed records (each idempotent: a retry of both is harmless)."""
    quota_settle_many([(r.request_id, r.reservation, r.charged) for r in records])
    budget_settle_many([(r.request_id, (r.usage.day.isoformat() if r.usage.day else ""), r.budget,
                         r.usage.cost_micros) for r in records if r.budget is not None])


def settle_pending() -> bool:
    """Settle committed records (exactly once each, whatever is retried). The writer calls it after it released
    a batch's responses, every idle second, and at exit until it succeeds; on a Redis error the records wait for
    the next call. True when nothing is left to settle."""
    with _settling:
        with _unsettled_lock:
            batch = list(_unsettled)
            _unsettled.clear()
        if not batch:
            return True
        try:
            _settle(batch)
        except Exception:
            logger.warning("record_retry: the quota settlement of %d calls failed; retried", len(batch),
                           exc_info=True)
            with _unsettled_lock:
                _unsettled[:0] = batch
            return False
        return True


# --- the journal's line format (no prompt or completion: their keyed hashes only) --------------------------------

_tenants: dict[str, Any] = {}


def _tenant(schema: str) -> Any:
    tenant = _tenants.get(schema)
    if tenant is None:
        from tenants.models import Tenant

        tenant = _tenants[schema] = Tenant.objects.get(schema_name=schema)
    return tenant


def _hashed(record: CallRecord) -> AuditEvent:
    """The record's audit event with its payloads replaced by their keyed hashes."""
    if record.audit.input_payload is None and record.audit.output_payload is None:
        return record.audit
    return record.audit.hashed(tenant_key_of(record.tenant))


def _fields(instance: Any) -> dict[str, Any]:
    """A dataclass's fields, shallow: json.dumps reads the nested lists and dicts as they are (dataclasses.asdict
    deep-copied every one of them, a sixth of a call's CPU in the request thread)."""
    return dict(vars(instance))


def record_line(record: CallRecord) -> bytes:
    """The journal line as UTF-8 (what the journal writes, inference.journal_lines): JSON, the audit entry last, its
    metadata and personal fields written as the canonical texts the entry's MACs and row are made of
    (AuditEvent.json_texts, kept on the event: the batch writer writes them as they are instead of serialising them
    again). Made as bytes, as orjson writes them: no str of the line is made and encoded again."""
    event = _hashed(record)
    metadata_json, personal_json = event.json_texts()
    audit = _fields(event)
    for name in ("metadata", "personal", "metadata_json", "personal_json"):
        del audit[name]
    audit["timestamp"] = event.timestamp.isoformat()
    usage = _fields(record.usage)
    usage["day"] = record.usage.day.isoformat() if record.usage.day else None
    line = jsonfast.dumps({"tenant": record.tenant.schema_name, "request_id": record.request_id,
                           "usage": usage, "reservation": _fields(record.reservation),
                           "used_tokens": record.used_tokens, "settle": record.settle,
                           "budget": _fields(record.budget) if record.budget else None, "audit": audit}, str)
    # `..."audit":{...}}`: the two texts go in before the audit object's closing brace
    return b"%s,\"metadata\":%s,\"personal\":%s}}" % (line[:-2], metadata_json.encode(), personal_json.encode())


def record_encode(record: CallRecord) -> str:
    """The journal line (record_line) as a str."""
    return record_line(record).decode()


def record_decode(line: str) -> CallRecord:
    data = jsonfast.loads(line)
    usage = dict(data["usage"])
    usage["day"] = date.fromisoformat(usage["day"]) if usage.get("day") else None
    audit = dict(data["audit"])
    audit["timestamp"] = datetime.fromisoformat(audit["timestamp"])
    return CallRecord(tenant=_tenant(data["tenant"]), request_id=data["request_id"], usage=UsageCount(**usage),
                      audit=AuditEvent(**audit), reservation=Reservation(**data["reservation"]),
                      used_tokens=int(data["used_tokens"]), settle=bool(data["settle"]),
                      budget=BudgetReservation(**data["budget"]) if data.get("budget") else None)


def records_lead(records: list[CallRecord]) -> list[CallRecord] | None:
    """A request thread writing its own call's records while the writer is idle (leader/follower): the same
    transaction on the request's connection, bounded by ATRIUM_RECORD_COMMIT_WAIT_MS so a locked table cannot
    hold the request. None when it cannot lead here (turned off, or inside a transaction Django manages)."""
    if not setting_flag("ATRIUM_RECORDER_LEAD", True) or not record_tx.usable():
        return None
    with record_tx.bounded(setting_number("ATRIUM_RECORD_COMMIT_WAIT_MS", 3000)):
        return records_write(records)


writer: BatchWriter[CallRecord] = BatchWriter(
    "recorder", records_write, Codec(key=lambda r: str(r.tenant.schema_name), encode=record_line,
                                     decode=record_decode), after=settle_pending, lead=records_lead)


def recorder_start() -> None:
    """Start this process's writer (gunicorn's post_worker_init): it replays what dead processes journaled; and
    settle the recent calls whose settlement died with their process (inference.settle_recovery)."""
    from inference.settle_recovery import settle_recovery_start

    writer.start()
    settle_recovery_start()


def records_available(tenant: Any) -> bool:
    """May a call of `tenant` be served now? False when its records are failing to commit and its policy is to
    fail closed (then the call is refused before anything is sent upstream)."""
    if not writer.degraded(tenant.schema_name):
        return True
    return _journal_first(tenant)


def record_now(record: CallRecord, persist: Callable[[], None] | None = None) -> None:
    """Write the records in this thread (the caller's own writes, `persist`, in the same transaction)."""
    failed, committed = _records_commit([record], persist)
    if failed:
        raise RecordNotWritten("the call's records could not be written")
    try:
        _settle(committed)
    except Exception:
        logger.warning("record_retry: the quota settlement of a call failed; retried", exc_info=True)
        with _unsettled_lock:
            _unsettled.extend(committed)


_DURABLE = Ticket()
_DURABLE._done.set()


def record_submit(record: CallRecord) -> Ticket:
    """Hand the record to the batch writer. A tenant whose durability point is the journal (`serve_and_journal`)
    has it fsynced to this process's journal here, and the returned ticket is done at once: the database commit
    follows in the background (docs/decisions.md). Any other tenant's ticket is done once the batch carrying the
    record is committed. A journal that cannot be written falls back to waiting for the commit."""
    if _journal_first(record.tenant) and setting_flag("ATRIUM_RECORD_IN_BACKGROUND", True):
        try:
            # The journal holds keyed hashes, never the prompt or the answer: _hashed, in place (the gateway made
            # the event for this record alone).
            record.audit.hash_payloads(tenant_key_of(record.tenant))
            writer.submit_journaled(record)
            return _DURABLE
        except Exception:
            metrics.RECORDER_JOURNAL_FAILURES.inc()
            logger.exception("record_journal_failed: a call record could not be journaled; waiting for the "
                             "database instead")
    return writer.submit(record)


def _journal_first(tenant: Any) -> bool:
    return str(getattr(tenant, "record_policy", "fail_closed")) == "serve_and_journal"


def record_durable(record: CallRecord, ticket: Ticket) -> None:
    """Return once the record is durable: committed (group commit), or, when the database does not take it within
    ATRIUM_RECORD_COMMIT_WAIT_MS and the tenant serves and journals, fsynced to the local journal. Otherwise
    RecordsUnavailable (the record itself stays queued: it is written when the database is back)."""
    if ticket.done or ticket.wait(setting_number("ATRIUM_RECORD_COMMIT_WAIT_MS", 3000) / 1000):
        return
    tenant = record.tenant
    if _journal_first(tenant):
        try:
            writer.journal(record)
            return
        except Exception:
            logger.exception("record_journal_failed: a call record could not be journaled")
    metrics.RECORDS_REFUSED.labels(tenant.schema_name).inc()
    raise RecordsUnavailable()


def usage_costs_recorded(day: date) -> Iterator[tuple[str, int | None, str, int]]:
    """The current tenant's recorded calls of `day` that cost something, for access.budgets.budget_rebuild."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT request_id, user_id, api_key, cost_micros FROM inference_usagerecord "
                       "WHERE day = %s AND cost_micros > 0", [day])
        while rows := cursor.fetchmany(2000):
            for request_id, user_id, api_key, cost in rows:
                yield str(request_id), user_id, str(api_key or ""), int(cost)


def usage_cost_totals(first: date, last: date) -> Iterator[tuple[int | None, str, int]]:
    """Cost per user and API key of the days first..last (daily rows), for access.budgets.budget_rebuild."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id, api_key, SUM(cost_micros) FROM inference_usagedaily "
                       "WHERE day BETWEEN %s AND %s GROUP BY 1, 2", [first, last])
        for user_id, api_key, cost in cursor.fetchall():
            yield user_id, str(api_key or ""), int(cost or 0)


def usage_recorded(day: str) -> Iterator[tuple[str, int | None, int]]:
    """The current tenant's recorded calls of `day` that charged tokens, for access.quotas.quota_rebuild."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT request_id, user_id, charged_tokens FROM inference_usagerecord "
                       "WHERE day = %s AND charged_tokens > 0", [day])
        while rows := cursor.fetchmany(2000):
            for request_id, user_id, charged in rows:
                yield str(request_id), user_id, int(charged)

"""The Message Batches API: a batch of Messages requests run by Celery through the same gateway as a single call.

`batch_create` validates every request (400 naming `requests.N…`), stores the batch and its requests in the
tenant's schema and queues `inference.tasks.batch_run`. The task takes the batch's lease (so two workers never run
one batch at once; `batch_recover` re-queues a batch whose worker died) and runs each request in order through
`gateway_admit` / `gateway_complete`: consent, access policy, quotas (a spent quota pauses the batch until
`retry-after`), the failover router, usage and one audit entry per request, keyed by `<batch id>:<custom_id>`.
A request's result is written in the transaction that records its usage and audit entry (`persist`), so a task
retried after a crash skips the requests already done and never records one twice. Cancelling marks the batch
`canceling`: the task cancels what it has not started and ends it. A batch not finished within
ATRIUM_BATCH_EXPIRY_S ends with its remaining requests `expired`. An ended batch's requests and results are
deleted ATRIUM_BATCH_RESULTS_RETENTION_DAYS after it was created (`batch_results_expire`, from beat): the batch
stays with its counts and `archived_at`, and its results answer 404.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from access.errors import AccessError, QuotaExceeded
from audit.services import audit_record
from config.stored_text import nul_at, stored
from config.tasks_base import TRANSIENT_ERRORS, connections_reset
from inference.calls import Call, InvalidRequest, validate_body
from inference.errors import InferenceError
from inference.models import MessageBatch, MessageBatchRequest

logger = logging.getLogger(__name__)

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")


class BatchNotFound(InferenceError):
    status = 404
    error_type = "not_found_error"


class BatchNotReady(InferenceError):
    status = 400
    error_type = "invalid_request_error"


class BatchResultsDeleted(InferenceError):
    """The batch's results were deleted after the retention period: they will not come back."""

    status = 404
    error_type = "not_found_error"


def new_batch_id() -> str:
    return f"msgbatch_{uuid.uuid4().hex}"


def _validate(requests: Any) -> None:
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest("requests: Field required, a non-empty list of {custom_id, params} objects.")
    limit = int(settings.ATRIUM_BATCH_MAX_REQUESTS)
    if len(requests) > limit:
        raise InvalidRequest(f"requests: at most {limit} requests in one batch (got {len(requests)}).")
    seen: set[str] = set()
    for index, item in enumerate(requests):
        if not isinstance(item, dict) or set(item) - {"custom_id", "params"}:
            raise InvalidRequest(f"requests.{index}: an object with exactly custom_id and params.")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise InvalidRequest(f"requests.{index}.custom_id: 1 to 64 letters, digits, '_' or '-'.")
        if custom_id in seen:
            raise InvalidRequest(f"requests.{index}.custom_id: {custom_id} is used twice in this batch; each "
                                 f"request needs its own.")
        seen.add(custom_id)
        params: Any = item.get("params")
        try:
            validate_body(params)
        except InvalidRequest as exc:
            raise InvalidRequest(f"requests.{index}.params.{exc.message}") from exc
        if params.get("stream"):
            raise InvalidRequest(f"requests.{index}.params.stream: batch requests cannot stream.")
        # A batch's requests are stored (jsonb) until they run, and jsonb cannot hold a NUL: refused, not altered.
        where = nul_at(params, f"requests.{index}.params")
        if where is not None:
            raise InvalidRequest(f"{where}: holds a NUL character (U+0000), which a batch request cannot carry "
                                 f"(PostgreSQL cannot store it); send this request to /v1/messages instead.")


def batch_create(*, user: Any, body: Any, betas: tuple[str, ...], auth_method: str,
                 auth_metadata: dict[str, Any], request: Any = None) -> MessageBatch:
    """Store a batch (body `{"requests": [...]}`) and queue it after commit; InvalidRequest names what is wrong."""
    if not isinstance(body, dict) or set(body) - {"requests"}:
        raise InvalidRequest("The request body must be a JSON object with one field, requests.")
    requests: Any = body.get("requests")
    _validate(requests)
    now = timezone.now()
    with transaction.atomic():
        batch = MessageBatch.objects.create(
            id=new_batch_id(), user=user, created_at=now,
            expires_at=now + timedelta(seconds=int(settings.ATRIUM_BATCH_EXPIRY_S)), betas=list(betas),
            auth_method=auth_method, auth_metadata=auth_metadata, total=len(requests))
        MessageBatchRequest.objects.bulk_create([
            MessageBatchRequest(batch=batch, position=i, custom_id=item["custom_id"], params=item["params"])
            for i, item in enumerate(requests)])
        audit_record(event_type="message_batch_created", user=user, request=request,
                     metadata={"batch": batch.id, "requests": len(requests), "auth": auth_method, **auth_metadata})
        transaction.on_commit(lambda: batch_enqueue(batch.id))
    return batch


def batch_enqueue(batch_id: str, countdown: float | None = None) -> None:
    from inference.tasks import batch_run

    if countdown is None:
        batch_run.apply_async(args=(batch_id,), queue=str(settings.ATRIUM_BATCH_QUEUE))
    else:
        batch_run.apply_async(args=(batch_id,), queue=str(settings.ATRIUM_BATCH_QUEUE), countdown=countdown)


def batch_for(user: Any, batch_id: str) -> MessageBatch:
    """The user's batch (an administrator's: any of the tenant's); BatchNotFound otherwise."""
    batches = MessageBatch.objects.filter(pk=batch_id)
    if not user.has_perm("access.admin"):
        batches = batches.filter(user=user)
    batch = batches.first()
    if batch is None:
        raise BatchNotFound(f"message batch {batch_id[:80]} (unknown, or not yours)")
    return batch


def batch_cancel(user: Any, batch_id: str, request: Any = None) -> MessageBatch:
    batch = batch_for(user, batch_id)
    with transaction.atomic():
        updated = MessageBatch.objects.filter(pk=batch.pk, status=MessageBatch.Status.IN_PROGRESS).update(
            status=MessageBatch.Status.CANCELING, cancel_initiated_at=timezone.now())
        if updated:
            audit_record(event_type="message_batch_canceled", user=user, request=request,
                         metadata={"batch": batch.id})
            transaction.on_commit(lambda: batch_enqueue(batch.id))
    batch.refresh_from_db()
    return batch


# --- the worker's side ---------------------------------------------------------------------------------------

def batch_claim(batch_id: str) -> MessageBatch | None:
    """Take the batch's lease; None when it has ended or another worker holds a live lease."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE inference_messagebatch SET lease_until = now() + make_interval(secs => %s) WHERE id = %s "
            "AND status IN ('in_progress', 'canceling') AND (lease_until IS NULL OR lease_until < now()) "
            "RETURNING id", [settings.ATRIUM_BATCH_LEASE_S, batch_id])
        claimed = cursor.fetchone()
    return MessageBatch.objects.get(pk=batch_id) if claimed else None


def _renew(batch: MessageBatch) -> str:
    """Extend the lease; the batch's status now (a cancel or an expiry may have come in)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE inference_messagebatch SET lease_until = now() + make_interval(secs => %s) "
                       "WHERE id = %s RETURNING status", [settings.ATRIUM_BATCH_LEASE_S, batch.pk])
        row = cursor.fetchone()
    return str(row[0]) if row else MessageBatch.Status.ENDED


def _finish(batch: MessageBatch, leftover: str) -> None:
    """Give every request without a result `leftover` (canceled, expired) and end the batch."""
    with transaction.atomic():
        MessageBatchRequest.objects.filter(batch=batch, result_type="").update(result_type=leftover)
        counts = _counts(batch)
        MessageBatch.objects.filter(pk=batch.pk).update(
            status=MessageBatch.Status.ENDED, ended_at=timezone.now(), lease_until=None, **{
                f"{kind}_count": counts.get(kind, 0) for kind in RESULT_TYPES})
        audit_record(event_type="message_batch_ended", user_id=batch.user_id,
                     metadata={"batch": batch.id, **{k: counts.get(k, 0) for k in RESULT_TYPES}})


def _counts(batch: MessageBatch) -> dict[str, int]:
    from django.db.models import Count

    rows = MessageBatchRequest.objects.filter(batch=batch).exclude(result_type="").values("result_type").annotate(
        n=Count("id"))
    return {row["result_type"]: int(row["n"]) for row in rows}


def _error_result(status: int, error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def batch_run(batch_id: str) -> str:
    """Run the batch's remaining requests (the Celery task's body). Returns what happened, for the logs.

    An error of a database or Redis that went away (config.tasks_base.TRANSIENT_ERRORS: a restart, a terminated
    connection) gives the lease back and is raised for the task to run the batch again with backoff
    (inference.tasks.batch_run); the results stored so far stand (a request is stored once, with its records)."""
    batch = batch_claim(batch_id)
    if batch is None:
        return "skipped"
    try:
        return _batch_run(batch)
    except TRANSIENT_ERRORS:
        logger.warning("message batch %s interrupted by the database or Redis; it will be run again", batch.id)
        connections_reset()
        with contextlib.suppress(*TRANSIENT_ERRORS):  # still away: the lease runs out (ATRIUM_BATCH_LEASE_S)
            MessageBatch.objects.filter(pk=batch.pk).update(lease_until=None)
        raise


def _batch_run(batch: MessageBatch) -> str:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=batch.user_id or 0, is_active=True).first()
    tenant = connection.tenant  # type: ignore[attr-defined]
    while True:
        status = _renew(batch)
        if status == MessageBatch.Status.CANCELING:
            _finish(batch, "canceled")
            return "canceled"
        if status == MessageBatch.Status.ENDED:
            return "ended"
        if timezone.now() >= batch.expires_at:
            _finish(batch, "expired")
            return "expired"
        item = MessageBatchRequest.objects.filter(batch=batch, result_type="").order_by("position").first()
        if item is None:
            _finish(batch, "expired")  # nothing left: no request is given this
            return "done"
        if user is None:
            _store(item, "errored", _error_result(403, "permission_error", "The batch's owner can no longer "
                                                                            "use models."))
            continue
        wait = _run_one(batch, item, tenant, user)
        if wait is not None:  # a quota is spent: pause the batch until it has room again
            MessageBatch.objects.filter(pk=batch.pk).update(lease_until=None)
            batch_enqueue(batch.id, countdown=wait)
            return "paused"


def _store(item: MessageBatchRequest, result_type: str, result: dict[str, Any]) -> None:
    # A provider's answer holding a NUL (or a lone surrogate) would make the result, and the call's records that
    # commit with it, impossible to store, and the request would run again forever: stored as U+FFFD instead.
    MessageBatchRequest.objects.filter(pk=item.pk, result_type="").update(result_type=result_type,
                                                                          result=stored(result))
    MessageBatch.objects.filter(pk=item.batch_id).update(updated_at=timezone.now())


def _run_one(batch: MessageBatch, item: MessageBatchRequest, tenant: Any, user: Any) -> float | None:
    """One request through the gateway; its result stored with its records. Seconds to wait when a quota is
    spent, else None."""
    from inference.admission import gateway_admit
    from inference.gateway import gateway_complete

    call = Call(tenant=tenant, user=user, body=dict(item.params), source="batch", request=None,
                auth_method=batch.auth_method, auth_metadata={**batch.auth_metadata, "batch": batch.id,
                                                              "custom_id": item.custom_id},
                request_id=f"{batch.id}:{item.custom_id}", betas=tuple(batch.betas or ()))
    try:
        admitted = gateway_admit(call)
        gateway_complete(admitted, persist=lambda message, _p, _r: _store(
            item, "succeeded", {"type": "succeeded", "message": message}))
    except QuotaExceeded as exc:
        return float(max(exc.retry_after, 1))
    except AccessError as exc:
        _store(item, "errored", {"type": "errored", "error": _error_result(
            exc.status, "permission_error" if exc.status == 403 else "invalid_request_error", exc.message)})
    except InferenceError as exc:
        from config.http import ERROR_TYPES

        _store(item, "errored", {"type": "errored", "error": _error_result(
            exc.status, exc.error_type or ERROR_TYPES.get(exc.status, "api_error"), exc.public_message)})
    return None


def batch_recover() -> int:
    """Queue again every unfinished batch whose worker went away (lease expired) or whose message was lost."""
    lost = timezone.now() - timedelta(seconds=int(settings.ATRIUM_BATCH_LEASE_S))
    count = 0
    for batch in MessageBatch.objects.filter(status__in=[MessageBatch.Status.IN_PROGRESS,
                                                         MessageBatch.Status.CANCELING]):
        if batch.lease_until is not None and batch.lease_until >= timezone.now():
            continue
        if batch.lease_until is None and batch.updated_at > lost:
            continue  # queued (or paused) recently: its message is on the way
        batch_enqueue(batch.id)
        count += 1
    return count


def batch_json(batch: MessageBatch, results_url: str | None) -> dict[str, Any]:
    counts = _counts(batch) if batch.status != MessageBatch.Status.ENDED else {
        k: getattr(batch, f"{k}_count") for k in RESULT_TYPES}
    done = sum(counts.get(k, 0) for k in RESULT_TYPES)

    def iso(value: Any) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {"id": batch.id, "type": "message_batch", "processing_status": batch.status,
            "request_counts": {"processing": max(batch.total - done, 0),
                               **{k: counts.get(k, 0) for k in RESULT_TYPES}},
            "created_at": iso(batch.created_at), "expires_at": iso(batch.expires_at), "ended_at": iso(batch.ended_at),
            "cancel_initiated_at": iso(batch.cancel_initiated_at), "archived_at": iso(batch.archived_at),
            "results_url": results_url if batch.status == MessageBatch.Status.ENDED and batch.archived_at is None
            else None}


def batch_results(batch: MessageBatch) -> Any:
    """The JSON Lines of an ended batch's results, in the order the requests were given."""
    import json

    if batch.archived_at is not None:
        raise BatchResultsDeleted(
            f"The results of message batch {batch.id} were deleted on {batch.archived_at:%Y-%m-%d}: results are "
            f"kept {int(settings.ATRIUM_BATCH_RESULTS_RETENTION_DAYS)} days after a batch is created.")
    if batch.status != MessageBatch.Status.ENDED:
        raise BatchNotReady(f"message batch {batch.id} is still {batch.status}; its results are available once "
                            f"it has ended.")
    rows = MessageBatchRequest.objects.filter(batch=batch).order_by("position").values_list(
        "custom_id", "result_type", "result").iterator(chunk_size=500)
    for custom_id, result_type, result in rows:
        body = result if result_type in ("succeeded", "errored") and result else {"type": result_type}
        yield (json.dumps({"custom_id": custom_id, "result": body}, separators=(",", ":")) + "\n").encode()


def batch_results_expire() -> int:
    """Delete the requests (prompts) and results of the current tenant's ended batches created more than
    ATRIUM_BATCH_RESULTS_RETENTION_DAYS ago; each batch in its own transaction, with an audit entry. The batch
    stays (counts, `archived_at`). Returns how many batches were archived."""
    days = int(settings.ATRIUM_BATCH_RESULTS_RETENTION_DAYS)
    due = list(MessageBatch.objects.filter(
        status=MessageBatch.Status.ENDED, archived_at__isnull=True,
        created_at__lt=timezone.now() - timedelta(days=days)).order_by("created_at").values_list("id", "user_id"))
    for batch_id, user_id in due:
        with transaction.atomic():
            deleted, _ = MessageBatchRequest.objects.filter(batch_id=batch_id).delete()
            MessageBatch.objects.filter(pk=batch_id).update(archived_at=timezone.now())
            audit_record(event_type="message_batch_results_deleted", user_id=user_id,
                         metadata={"batch": batch_id, "requests": deleted, "retention_days": days})
    return len(due)


def wait_ended(batch_id: str, timeout_s: float = 60.0) -> MessageBatch:  # pragma: no cover - tests and demos
    deadline = time.monotonic() + timeout_s
    while True:
        batch = MessageBatch.objects.get(pk=batch_id)
        if batch.status == MessageBatch.Status.ENDED or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)

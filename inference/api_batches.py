"""/v1/messages/batches: create, list, retrieve, cancel, delete and results (JSON Lines), Anthropic's shapes.

The requests are run by Celery (inference.batches); every error here is Anthropic's JSON error, so the official
SDKs' `client.messages.batches.*` raise their own exception classes.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from access.policy import betas_check
from config.http import api_error, error_from_exception
from inference.api_v1 import _auth_metadata, _authenticate, _json_body
from inference.batches import (
    BatchNotReady,
    batch_cancel,
    batch_create,
    batch_for,
    batch_json,
    batch_results,
)
from inference.calls import InvalidRequest
from inference.models import MessageBatch

MAX_LIMIT = 1000


def _results_url(request: HttpRequest, batch: MessageBatch) -> str:
    return request.build_absolute_uri(f"/v1/messages/batches/{batch.id}/results")


def _json(request: HttpRequest, batch: MessageBatch, status: int = 200) -> JsonResponse:
    return JsonResponse(batch_json(batch, _results_url(request, batch)), status=status)


@csrf_exempt
def batches(request: HttpRequest) -> HttpResponseBase:
    """POST: create a batch; GET: list the caller's batches, newest first (limit, before_id, after_id)."""
    if request.method not in ("GET", "POST"):
        return api_error(405, f"Method {request.method} not allowed on /v1/messages/batches; use GET or POST.")
    try:
        user, info = _authenticate(request)
        if request.method == "POST":
            betas = betas_check(connection.tenant, request.headers.get("anthropic-beta"))  # type: ignore[attr-defined]
            batch = batch_create(user=user, body=_json_body(request), betas=betas, auth_method=info.method,
                                 auth_metadata=_auth_metadata(info), request=request)
            return _json(request, batch)
        return _list(request, user)
    except Exception as exc:
        return error_from_exception(exc)


def _list(request: HttpRequest, user: Any) -> JsonResponse:
    try:
        limit = int(request.GET.get("limit", "20"))
    except ValueError as exc:
        raise InvalidRequest("limit: an integer from 1 to 1000.") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("limit: an integer from 1 to 1000.")
    rows = MessageBatch.objects.all()
    if not user.has_perm("access.admin"):
        rows = rows.filter(user=user)
    before, after = request.GET.get("before_id"), request.GET.get("after_id")
    # Newest first: after_id pages towards older batches, before_id towards newer ones (the SDK's cursors).
    if after:
        rows = rows.filter(created_at__lt=batch_for(user, after).created_at)
    if before:
        rows = rows.filter(created_at__gt=batch_for(user, before).created_at).order_by("created_at")
    else:
        rows = rows.order_by("-created_at")
    page = list(rows[:limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    if before:
        page.reverse()
    data = [batch_json(b, _results_url(request, b)) for b in page]
    return JsonResponse({"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None})


@csrf_exempt
def batch(request: HttpRequest, batch_id: str) -> HttpResponseBase:
    """GET: retrieve; DELETE: delete an ended batch and its results."""
    if request.method not in ("GET", "DELETE"):
        return api_error(405, f"Method {request.method} not allowed here; use GET or DELETE.")
    try:
        user, _info = _authenticate(request)
        found = batch_for(user, batch_id)
        if request.method == "GET":
            return _json(request, found)
        if found.status != MessageBatch.Status.ENDED:
            raise BatchNotReady(f"message batch {found.id} is still {found.status}; cancel it, and delete it once "
                                f"it has ended.")
        with transaction.atomic():
            MessageBatch.objects.filter(pk=found.pk).delete()
        return JsonResponse({"id": found.id, "type": "message_batch_deleted"})
    except Exception as exc:
        return error_from_exception(exc)


@csrf_exempt
def batch_cancel_view(request: HttpRequest, batch_id: str) -> HttpResponseBase:
    if request.method != "POST":
        return api_error(405, f"Method {request.method} not allowed here; use POST.")
    try:
        user, _info = _authenticate(request)
        return _json(request, batch_cancel(user, batch_id, request))
    except Exception as exc:
        return error_from_exception(exc)


def batch_results_view(request: HttpRequest, batch_id: str) -> HttpResponseBase:
    if request.method != "GET":
        return api_error(405, f"Method {request.method} not allowed here; use GET.")
    try:
        user, _info = _authenticate(request)
        found = batch_for(user, batch_id)
        lines = batch_results(found)
        first = next(lines, None)  # raises BatchNotReady before any byte is sent
    except Exception as exc:
        return error_from_exception(exc)

    def body() -> Any:
        if first is not None:
            yield first
        yield from lines

    return StreamingHttpResponse(body(), content_type="application/binary")

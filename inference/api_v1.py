"""The Anthropic-compatible API: POST /v1/messages (JSON and SSE) and GET /v1/models.

Plain Django views (no DRF) on the hot path: the gateway overhead budget is about a millisecond.
Every error is Anthropic's JSON shape with Anthropic's status code, so the official SDKs raise their own
exception classes (BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError, RateLimitError,
InternalServerError, OverloadedError).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from access.authentication import AuthInfo, authenticate_api_request
from access.errors import AccessError, QuotaExceeded
from access.policy import model_allowed_by_tenant, permitted_tiers
from config.middleware import current_request_id
from config.request_limits import JsonTooDeep, json_loads_limited
from inference.catalog.selectors import CatalogEntry, catalog_entries, catalog_entry
from inference.errors import InferenceError, UpstreamRequestError, redact_configuration
from inference.gateway import Call, InvalidRequest, gateway_admit, gateway_complete, gateway_stream

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest

    from tenants.models import Tenant

logger = logging.getLogger(__name__)

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
               422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """Anthropic's error JSON, for /v1/ and the conversations API alike."""
    return {"type": "error", "error": {"type": error_type or ERROR_TYPES.get(status, "api_error"), "message": message}}


# Statuses Python's http module does not name; without a phrase Django sends "Unknown Status Code".
REASON_PHRASES = {529: "Overloaded"}


def api_error(status: int, message: str, error_type: str | None = None,
              headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse(error_body(status, message, error_type), status=status,
                            reason=REASON_PHRASES.get(status))
    for name, value in (headers or {}).items():
        response[name] = value
    if status == 529:
        # Every provider failing is an upstream condition the operator watches, not a fault of this server:
        # WARNING with the request id (the audit entry has the attempts), and Django's ERROR log line suppressed.
        logger.warning("no provider could answer (529 overloaded), request %s", current_request_id() or "-")
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def error_from_exception(exc: Exception) -> JsonResponse:
    """One place that maps every typed failure to its Anthropic-shaped response."""
    if isinstance(exc, RequestDataTooBig):
        return api_error(413, f"The request body is larger than this server accepts "
                              f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes).")
    if isinstance(exc, QuotaExceeded):
        return api_error(429, exc.message, headers={"retry-after": str(exc.retry_after)})
    if isinstance(exc, AccessError):
        return api_error(exc.status, exc.message)
    if isinstance(exc, UpstreamRequestError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else None
        if error and error.get("type") and error.get("message"):
            return api_error(exc.status, redact_configuration(str(error["message"])), str(error["type"]))
        return api_error(exc.status, exc.public_message)
    if isinstance(exc, InferenceError):
        message = exc.public_message
        if exc.status >= 500:
            message = f"{message} (request id {current_request_id()})"
        return api_error(exc.status, message, exc.error_type)
    logger.exception("unexpected error in the /v1 API")
    return api_error(500, f"Internal error; request id {current_request_id()} identifies it in the logs.")


def _authenticate(request: HttpRequest) -> tuple[Any, AuthInfo]:
    user, info = authenticate_api_request(request)
    return user, info


def _auth_metadata(info: AuthInfo) -> dict[str, Any]:
    if info.method == "api_key":
        return {"api_key_prefix": info.api_key_prefix}
    return {"issuer": info.issuer}


def sse(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    try:
        for event in events:
            data = json.dumps(event, separators=(",", ":"))
            yield f"event: {event.get('type', 'message')}\ndata: {data}\n\n".encode()
    finally:
        # The client went away (the server closed us): close the upstream stream now, which records the call
        # as incomplete, rather than whenever the garbage collector gets to it.
        close = getattr(events, "close", None)
        if close is not None:
            close()


@csrf_exempt
def messages(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return api_error(405, f"Method {request.method} not allowed on /v1/messages; use POST.")
    try:
        user, info = _authenticate(request)
        try:
            body = json_loads_limited(request.body or b"null")  # too large: RequestDataTooBig, a 413 below
        except JsonTooDeep as exc:
            raise InvalidRequest(f"The request body is nested too deeply ({exc}).") from exc
        except ValueError as exc:
            raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
        call = Call(tenant=connection.tenant, user=user, body=body, source="api", request=request,  # type: ignore[attr-defined]
                    auth_method=info.method, auth_metadata=_auth_metadata(info))
        admitted = gateway_admit(call)
        if body.get("stream"):
            events = gateway_stream(admitted, background=True)
            response: HttpResponseBase = StreamingHttpResponse(sse(events), content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
        else:
            response = JsonResponse(gateway_complete(admitted, background=True))
        for name, value in admitted.clamp_headers.items():
            response[name] = value
        return response
    except Exception as exc:
        return error_from_exception(exc)


def models_for(user: User, tenant: Tenant) -> list[CatalogEntry]:
    tiers = set(permitted_tiers(user=user, tenant=tenant))
    is_admin = user.has_perm("access.admin")
    return [e for e in catalog_entries()
            if (e.tier in tiers) or (e.tier is None and is_admin and model_allowed_by_tenant(tenant, e.model_id, None))]


def _model_json(entry: CatalogEntry) -> dict[str, Any]:
    return {"type": "model", "id": entry.model_id, "display_name": entry.display_name,
            "created_at": entry.created_at.isoformat().replace("+00:00", "Z")}


def models(request: HttpRequest, model_id: str | None = None) -> HttpResponse:
    if request.method != "GET":
        return api_error(405, f"Method {request.method} not allowed; use GET.")
    try:
        user, _info = _authenticate(request)
        mine = models_for(user, connection.tenant)  # type: ignore[attr-defined]
        if model_id is not None:
            entry = catalog_entry(model_id)
            if entry is None or entry not in mine:
                return api_error(404, f"model: {model_id} (unknown, or not available to you)")
            return JsonResponse(_model_json(entry))
        data = [_model_json(e) for e in mine]
        return JsonResponse({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None})
    except Exception as exc:
        return error_from_exception(exc)


@csrf_exempt
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return api_error(404, f"Atrium does not serve {request.method} /v1/{rest}; it serves /v1/messages and /v1/models.")

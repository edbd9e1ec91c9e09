"""The Anthropic-compatible API: POST /v1/messages (JSON and SSE) and GET /v1/models.

Plain Django views (no DRF) on the hot path: the gateway overhead budget is about a millisecond.
Every error is Anthropic's JSON shape with Anthropic's status code, so the official SDKs raise their own
exception classes (BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError, RateLimitError,
InternalServerError, OverloadedError); the mapping and the SSE framing live in config/http.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from access.authentication import AuthInfo, authenticate_api_request
from access.policy import model_allowed_by_tenant, permitted_tiers
from config import jsonfast
from config.http import api_error, error_from_exception, sse
from config.request_limits import JsonTooDeep, json_loads_limited
from inference.catalog.selectors import CatalogEntry, catalog_entries, catalog_entry
from inference.counting import count_tokens as count_tokens_call
from inference.gateway import Call, InvalidRequest, gateway_admit, gateway_complete, gateway_stream

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest

    from tenants.models import Tenant

logger = logging.getLogger(__name__)

# JsonResponse's fallback for dates, decimals and UUIDs (DjangoJSONEncoder's), for config.jsonfast.
_django_default = DjangoJSONEncoder().default


def json_response(data: dict[str, Any]) -> HttpResponse:
    """`JsonResponse(data)`: the same values and Content-Type, encoded by orjson (config.jsonfast: compact, UTF-8)
    straight to bytes."""
    return HttpResponse(jsonfast.dumps(data, _django_default), content_type="application/json")


def _authenticate(request: HttpRequest) -> tuple[Any, AuthInfo]:
    user, info = authenticate_api_request(request)
    return user, info


def _auth_metadata(info: AuthInfo) -> dict[str, Any]:
    if info.method == "api_key":
        return {"api_key_prefix": info.api_key_prefix}
    return {"issuer": info.issuer}


def _json_body(request: HttpRequest) -> Any:
    try:
        return json_loads_limited(request.body or b"null")  # too large: RequestDataTooBig, a 413
    except JsonTooDeep as exc:
        raise InvalidRequest(f"The request body is nested too deeply ({exc}).") from exc
    except ValueError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc


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
            # Nothing is written between the events here (the web chat writes after the first): message_start goes
            # out with the events that arrived with it, in one write instead of two.
            response: HttpResponseBase = StreamingHttpResponse(sse(events, first_alone=False),
                                                               content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
        else:
            response = json_response(gateway_complete(admitted, background=True))
        for name, value in admitted.clamp_headers.items():
            response[name] = value
        return response
    except Exception as exc:
        return error_from_exception(exc)


@csrf_exempt
def count_tokens(request: HttpRequest) -> HttpResponseBase:
    """POST /v1/messages/count_tokens: counted by the tenant's providers with failover, audited, never charged."""
    if request.method != "POST":
        return api_error(405, f"Method {request.method} not allowed on /v1/messages/count_tokens; use POST.")
    try:
        user, info = _authenticate(request)
        body = _json_body(request)
        call = Call(tenant=connection.tenant, user=user, body=body, source="api", request=request,  # type: ignore[attr-defined]
                    auth_method=info.method, auth_metadata=_auth_metadata(info))
        return JsonResponse(count_tokens_call(call))
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
    return api_error(404, f"Atrium does not serve {request.method} /v1/{rest}; it serves /v1/messages, "
                          f"/v1/messages/count_tokens, /v1/messages/batches and /v1/models.")

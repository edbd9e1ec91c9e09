"""Error responses Django produces itself (unknown URL, CSRF failure, suspicious request, uncaught exception).

APIs (/v1/, /api/) get Anthropic's error JSON, never an HTML page; browsers get Atrium's own pages, never Django's
debug or default ones. The messages say what the caller can act on and nothing about the configuration.
"""

from __future__ import annotations

import sys
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from config.http import UNAVAILABLE_MESSAGE, UNAVAILABLE_RETRY_AFTER_S, backend_unavailable, error_body
from config.middleware import current_request_id

_API_PREFIXES = ("/v1/", "/api/")
_TEXT = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Not allowed", "You may not do this, or the form expired: reload the page and try again."),
    404: ("Not found", "There is nothing at this address."),
    500: ("Something went wrong", "The error was logged."),
    503: ("Temporarily unavailable", UNAVAILABLE_MESSAGE),
}


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(_API_PREFIXES)


def error_response(request: HttpRequest, status: int, message: str | None = None) -> HttpResponse:
    title, default = _TEXT.get(status, ("Error", "The request failed."))
    text = message or default
    request_id = current_request_id() or getattr(request, "request_id", "")
    if status >= 500 and request_id:
        text = f"{text} Request id {request_id}."
    if is_api(request):
        return JsonResponse(error_body(status, text), status=status)
    # No RequestContext for a 500: the context processors might be what failed.
    context: dict[str, Any] = {"status": status, "title": title, "message": text}
    return HttpResponse(loader.get_template("errors/error.html").render(context), status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500, called while the uncaught exception is being handled: the database or Redis being
    unreachable (in a middleware too, e.g. the tenant's host lookup) is a 503 the client may retry, not a 500."""
    if backend_unavailable(sys.exc_info()[1]):
        response = error_response(request, 503)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
        return response
    return error_response(request, 500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_response(request, 403, "The form expired or was sent from another site: reload the page and try "
                                        "again.")

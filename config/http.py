"""The one place where failures become HTTP answers, and where event streams are framed (issue 20).

- **Typed errors.** `HttpError` carries its status, its Anthropic error type and a message safe to show; access's
  `AccessError`, inference's `InferenceError` and the compliance refusals derive from it. Nobody maps a failure by
  reading its message.
- **One error shape** for /v1/, /api/ and the JSON of the console and the chat: Anthropic's
  `{"type": "error", "error": {"type": ..., "message": ...}}` (`error_body`, `api_error`).
- `error_from_exception` maps any exception once (plain Django views: /v1/, the chat's streaming views);
  `drf_exception_handler` is DRF's EXCEPTION_HANDLER, so every /api/ failure, DRF's own included (not signed in, bad
  token, malformed JSON, wrong method, throttled, invalid input), has the same shape instead of `{"detail": ...}`.
- `sse` frames events as `text/event-stream` for /v1/messages and the chat.

Infrastructure: imports no app (the apps' error classes import this module).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.http.response import HttpResponseBase

from config import jsonfast

logger = logging.getLogger("atrium.http")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 406: "invalid_request_error",
               409: "invalid_request_error", 410: "not_found_error", 413: "request_too_large",
               415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
               500: "api_error", 503: "api_error", 529: "overloaded_error"}
# Statuses Python's http module does not name; without a phrase Django sends "Unknown Status Code".
REASON_PHRASES = {529: "Overloaded"}


class HttpError(Exception):
    """Base of every failure that knows its HTTP answer. Subclasses set `status` (and `error_type` when it is not
    the status's usual one); `public_message` is what the caller may read, `message` the full detail (logs, audit)."""

    status: int = 500
    error_type: str = ""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def public_message(self) -> str:
        return self.message

    @property
    def type_name(self) -> str:
        return self.error_type or ERROR_TYPES.get(self.status, "api_error")

    @property
    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(HttpError):
    status = 400


def current_request_id() -> str:
    """The request id of this request (config.middleware), imported late: the middleware imports this module."""
    from config.middleware import current_request_id as request_id

    return request_id() or ""


def error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """Anthropic's error JSON, for /v1/, /api/ and every other JSON answer of Atrium."""
    return {"type": "error", "error": {"type": error_type or ERROR_TYPES.get(status, "api_error"), "message": message}}


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


def _with_request_id(status: int, message: str) -> str:
    return f"{message} (request id {current_request_id()})" if status >= 500 else message


UNAVAILABLE_MESSAGE = "Atrium cannot reach its database or cache for a moment. Retry in a few seconds."
UNAVAILABLE_RETRY_AFTER_S = 2


def backend_unavailable(exc: BaseException | None) -> bool:
    """Is `exc` PostgreSQL or Redis being unreachable (cut, restarting, refusing connections), which a retry in a
    few seconds can get past, rather than a bug? Such a failure is a 503 with Retry-After, never a 500."""
    if exc is None:
        return False
    from django.db import InterfaceError, OperationalError
    from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

    return isinstance(exc, (OperationalError, InterfaceError, ConnectionError, TimeoutError, BusyLoadingError))


def error_from_exception(exc: Exception) -> JsonResponse:
    """Every failure's one JSON answer: a typed error's own status, type, public message and headers; an oversized
    body a 413; the database or Redis unreachable a 503 with Retry-After; anything else a logged 500 that names
    only the request id."""
    if isinstance(exc, RequestDataTooBig):
        return api_error(413, f"The request body is larger than this server accepts "
                              f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes).")
    if isinstance(exc, HttpError):
        return api_error(exc.status, _with_request_id(exc.status, exc.public_message), exc.type_name, exc.headers)
    if backend_unavailable(exc):
        logger.warning("backend_unavailable: %s answering an API request", type(exc).__name__)
        return api_error(503, _with_request_id(503, UNAVAILABLE_MESSAGE), "api_error",
                         {"retry-after": str(UNAVAILABLE_RETRY_AFTER_S)})
    logger.exception("unexpected error answering an API request")
    return api_error(500, f"Internal error; request id {current_request_id()} identifies it in the logs.")


class Framed(dict[str, Any]):
    """A stream event together with the JSON it was decoded from (`data`: one line of UTF-8 JSON, no CR or LF),
    which `sse` writes as it is instead of encoding the event again: a provider's event relayed unchanged costs no
    encoding. An event is never changed in place: whoever changes one makes a new (plain) dict, as the gateway does
    for message_start's model and for errors."""

    __slots__ = ("data",)
    data: bytes  # set by whoever makes one: `event = Framed(decoded); event.data = line` (no __init__ to call)


def sse(events: Iterator[dict[str, Any]], *, first_alone: bool = True) -> Generator[bytes, None, None]:
    """Server-sent events: `event: <type>` and one line of JSON per event (compact, or a Framed event's own).
    Events that have arrived together (`events.ready()`, if it has one, says the next one will not wait) are
    written as one piece: a read of the provider's holding several events is one write, not one each. With
    `first_alone` the first event is a piece of its own (inference.chat writes its `atrium.question` right after
    it); without (/v1/messages, where nothing comes between), it joins the events that arrived with it too.
    When the client goes away (the server closes this generator), the upstream generator is closed at once, which
    records the call as incomplete, rather than whenever the garbage collector gets to it.

    Events that frame themselves (`events.pieces()`, inference.gateway.Events: a piece per read of the provider's,
    its events as they came) are written as they frame themselves when the first event need not be alone."""
    pieces = getattr(events, "pieces", None)
    if pieces is not None and not first_alone:
        return pieces()  # type: ignore[no-any-return]
    return _sse(events, first_alone)


def _sse(events: Iterator[dict[str, Any]], first_alone: bool) -> Generator[bytes, None, None]:
    ready = getattr(events, "ready", None)
    first = first_alone  # the first event written alone: a caller may write its own right after it (the web chat)
    try:
        iterator = iter(events)
        for event in iterator:
            frame = sse_frame(event)
            if first or ready is None or not ready():
                first = False
                yield frame
                continue
            frames = [frame]
            try:
                while ready():
                    frames.append(sse_frame(next(iterator)))
            except StopIteration:
                pass
            except BaseException:
                yield b"".join(frames)  # what was taken goes out before the failure, as it did one by one
                raise
            yield b"".join(frames)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def sse_frame(event: dict[str, Any]) -> bytes:
    """One event's SSE frame: `event: <type>`, then its data: a Framed event's own bytes, else compact JSON."""
    if type(event) is Framed:
        return f"event: {event.get('type', 'message')}\ndata: ".encode() + event.data + b"\n\n"
    return f"event: {event.get('type', 'message')}\ndata: ".encode() + jsonfast.dumps(event) + b"\n\n"


def _flatten(detail: Any, field: str = "") -> list[str]:
    """DRF's error detail (a string, a list, a dict of fields) as "field: message" lines."""
    if isinstance(detail, dict):
        return [line for key, value in detail.items()
                for line in _flatten(value, key if key != "non_field_errors" else field)]
    if isinstance(detail, list):
        return [line for item in detail for line in _flatten(item, field)]
    text = str(detail)
    return [f"{field}: {text}" if field else text]


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponseBase | None:
    """DRF's EXCEPTION_HANDLER: Atrium's typed errors and DRF's own exceptions answered in the one error shape.

    DRF's handler runs first for its exceptions (it sets WWW-Authenticate, Allow and Retry-After and turns Django's
    Http404 and PermissionDenied into its own); its `{"detail": ...}` body is then replaced. Anything else is not
    handled here: Django's 500 handler answers it, in the same shape on /api/ (config/error_views.py)."""
    from rest_framework.views import exception_handler

    if isinstance(exc, (HttpError, RequestDataTooBig)):
        return error_from_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", None)
    lines = _flatten(detail) if detail is not None else [str(response.data)]
    message = "; ".join(lines) or HttpResponse(status=response.status_code).reason_phrase
    response.data = error_body(response.status_code, message)
    return response

"""The failover router: try each healthy target in order with the model id it knows, within one deadline.

Errors are classified once (`classify`): the caller's own mistakes (400, 413, 422) return as they are; a provider's
trouble (connection errors, timeouts, 408, 429, 5xx, 529) fails over and counts against that target's breaker;
a misconfiguration (401, 403, 404, missing credentials) fails over without touching the breaker, because the
breaker is shared by every tenant and one tenant's bad key says nothing about the provider's health.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
from django.conf import settings

from inference import breaker
from inference.catalog.selectors import CatalogEntry, catalog_entry
from inference.errors import ModelNotFound, ProviderMisconfigured, ProviderUnavailable, UpstreamRequestError
from inference.providers.base import provider_client, provider_create, provider_stream
from inference.types import Attempt, MessageRequest, ProviderTarget, RouterResult, RouterStream

logger = logging.getLogger(__name__)

CALLER_ERRORS = frozenset({400, 413, 422})
MISCONFIGURED = frozenset({401, 403, 404})

Kind = Literal["caller", "transient", "misconfigured"]


@dataclass(frozen=True)
class Failure:
    kind: Kind
    status: int | None
    reason: str
    body: Any = None


def classify(exc: BaseException) -> Failure:
    """What an exception from a provider call means for failover."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else None
        detail = _error_message(body) or type(exc).__name__
        if status < 400:  # an `event: error` inside a 200 stream
            return Failure("transient", None, f"stream error: {detail}", body)
        reason = f"HTTP {status}: {detail}"
        if status in CALLER_ERRORS:
            return Failure("caller", status, reason, body)
        if status in MISCONFIGURED:
            return Failure("misconfigured", status, reason, body)
        return Failure("transient", status, reason, body)
    if isinstance(exc, anthropic.APITimeoutError):
        return Failure("transient", None, "timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return Failure("transient", None, f"connection error: {_root_cause(exc)}")
    if isinstance(exc, ProviderMisconfigured):
        return Failure("misconfigured", None, f"misconfigured: {exc.message}")
    if isinstance(exc, anthropic.APIResponseValidationError):
        return Failure("transient", None, "malformed response from provider")
    if _is_credentials_error(exc):
        return Failure("misconfigured", None, f"misconfigured: {type(exc).__name__}: {exc}")
    raise exc


def _is_credentials_error(exc: BaseException) -> bool:
    # Signing happens inside the SDK call: boto3 without credentials raises RuntimeError / NoCredentialsError,
    # google-auth raises RefreshError / DefaultCredentialsError.
    module = type(exc).__module__
    if module.startswith(("botocore", "google.auth")):
        return True
    return isinstance(exc, RuntimeError) and "credentials" in str(exc).lower()


def _error_message(body: dict[str, Any] | None) -> str:
    if not body:
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message", ""))[:200]
    return str(body.get("message", body.get("Message", "")))[:200]


def _root_cause(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return type(cause).__name__ if cause is not None else "unknown"


def _resolve(request: MessageRequest) -> CatalogEntry:
    entry = catalog_entry(request.model)
    if entry is None:
        raise ModelNotFound(f"model: {request.model} is not a known model or tier")
    return entry


def _timeout(deadline: float) -> anthropic.Timeout:
    remaining = max(deadline - time.monotonic(), 0.001)
    return anthropic.Timeout(remaining, connect=min(settings.ATRIUM_CONNECT_TIMEOUT_S, remaining))


class _Attempts:
    """Walks the targets: resolves the model id, consults the breaker, records each attempt."""

    def __init__(self, request: MessageRequest, targets: Sequence[ProviderTarget], deadline_s: float | None,
                 admissions: Mapping[str, int] | None = None) -> None:
        self.entry = _resolve(request)
        # Breaker answers the caller already obtained (the gateway asks with its quota script), by target key;
        # each is used once, for the first visit of its target.
        self.admissions = dict(admissions or {})
        self.request = request
        self.targets = targets
        self.started = time.monotonic()
        self.deadline = self.started + (deadline_s if deadline_s is not None else settings.ATRIUM_REQUEST_DEADLINE_S)
        self.attempts: list[Attempt] = []

    def candidates(self) -> Iterator[tuple[ProviderTarget, str, int]]:
        served = False
        for target in self.targets:
            model_id = self.entry.provider_model_id(target.provider, target.region)
            if model_id is None:
                self.attempts.append(Attempt(target.key, "", "skipped", reason="model not offered by this provider"))
                continue
            served = True
            if time.monotonic() >= self.deadline:
                raise ProviderUnavailable(self.attempts, deadline_exceeded=True)
            admission = self.admissions.pop(target.key, None)
            if admission is None:
                admission = breaker.breaker_allow(target.key)
            if admission == breaker.SKIP:
                self.attempts.append(Attempt(target.key, model_id, "skipped", reason="circuit open"))
                continue
            yield target, model_id, admission
        if not served and self.targets:
            raise ModelNotFound(f"model: {self.entry.model_id} is not offered by any provider of this organisation")
        raise ProviderUnavailable(self.attempts)

    def failed(self, target: ProviderTarget, model_id: str, exc: BaseException, t0: float) -> Failure:
        failure = classify(exc)
        latency = (time.monotonic() - t0) * 1000
        if failure.kind == "caller":
            self.attempts.append(Attempt(target.key, model_id, "error", failure.status, failure.reason, latency))
            # The provider answered sensibly, so it is healthy; a half-open probe ends here too.
            breaker.breaker_record_success(target.key)
            raise UpstreamRequestError(failure.status or 400, failure.body, failure.reason, self.attempts) from exc
        self.attempts.append(Attempt(target.key, model_id, "failover", failure.status, failure.reason, latency))
        if failure.kind == "transient":
            breaker.breaker_record_failure(target.key, reason=failure.reason)
        logger.warning("provider attempt failed", extra={"target": target.key, "model_id": model_id,
                                                          "status": failure.status, "reason": failure.reason})
        return failure

    def succeeded(self, target: ProviderTarget, model_id: str, admission: int, t0: float) -> None:
        self.attempts.append(Attempt(target.key, model_id, "ok", 200, "", (time.monotonic() - t0) * 1000))
        if admission != breaker.ALLOW_CLEAN:
            breaker.breaker_record_success(target.key)


def route(
    request: MessageRequest, targets: Sequence[ProviderTarget], *, deadline_s: float | None = None,
    admissions: Mapping[str, int] | None = None,
) -> RouterResult:
    """Call the first target that answers. Raises UpstreamRequestError, ModelNotFound or ProviderUnavailable.

    `admissions`: breaker answers (breaker_allow's codes) already obtained for some targets, used instead of
    asking again."""
    walk = _Attempts(request, targets, deadline_s, admissions)
    for target, model_id, admission in walk.candidates():
        t0 = time.monotonic()
        try:
            client = provider_client(target)
            message = provider_create(client, model_id=model_id, params=request.params, timeout=_timeout(walk.deadline))
        except Exception as exc:
            walk.failed(target, model_id, exc, t0)
            continue
        walk.succeeded(target, model_id, admission, t0)
        return RouterResult(
            message=message,
            provider=target.provider,
            region=target.region,
            model_id=model_id,
            latency_ms=(time.monotonic() - walk.started) * 1000,
            attempts=walk.attempts,
        )
    raise AssertionError("unreachable: candidates() raises when exhausted")  # pragma: no cover


def route_stream(
    request: MessageRequest, targets: Sequence[ProviderTarget], *, deadline_s: float | None = None,
    admissions: Mapping[str, int] | None = None,
) -> RouterStream:
    """Open a stream on the first target that produces an event; failover happens only before that event."""
    walk = _Attempts(request, targets, deadline_s, admissions)
    for target, model_id, admission in walk.candidates():
        t0 = time.monotonic()
        stream = None
        try:
            client = provider_client(target)
            stream = provider_stream(client, model_id=model_id, params=request.params, timeout=_timeout(walk.deadline))
            iterator = iter(stream)
            first = next(iterator)
        except StopIteration:
            _close(stream)
            walk.failed(target, model_id, anthropic.APIConnectionError(request=None,  # type: ignore[arg-type]
                                                                       message="empty stream"), t0)
            continue
        except Exception as exc:
            _close(stream)
            walk.failed(target, model_id, exc, t0)
            continue
        walk.succeeded(target, model_id, admission, t0)
        result = RouterStream(
            events=iter(()), provider=target.provider, region=target.region, model_id=model_id,
            attempts=walk.attempts, started_at=walk.started, close=lambda s=stream: _close(s),
        )
        result.first_event_ms = (time.monotonic() - walk.started) * 1000
        result._events = _relay(result, target, first, iterator)
        return result
    raise AssertionError("unreachable: candidates() raises when exhausted")  # pragma: no cover


def _close(stream: Any) -> None:
    if stream is not None:
        try:
            stream.close()
        except Exception:
            logger.debug("closing an upstream stream failed", exc_info=True)


def _relay(result: RouterStream, target: ProviderTarget, first: Any, rest: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """Hand out events, accumulating the message; a failure after the first event ends with an error event."""
    message: dict[str, Any] = {}
    result.message = message
    try:
        event = first
        while True:
            if isinstance(event, dict):
                accumulate(message, event)
                yield event
            try:
                event = next(rest)
            except StopIteration:
                break
    except GeneratorExit:
        result.incomplete = message.get("stop_reason") is None
        result.close()
        raise
    except Exception as exc:
        try:
            failure = classify(exc)
            reason = failure.reason
            if failure.kind == "transient":
                breaker.breaker_record_failure(target.key, reason=reason)
        except Exception:
            reason = f"{type(exc).__name__}"
            logger.exception("unexpected error while relaying a provider stream")
        result.incomplete = True
        error_type = _stream_error_type(exc)
        result.error = {"type": error_type, "message": f"The provider stream failed after it started ({reason})."}
        result.close()
        yield {"type": "error", "error": result.error}
    finally:
        result.latency_ms = (time.monotonic() - result.started_at) * 1000


def _stream_error_type(exc: BaseException) -> str:
    """An upstream `event: error` arrives as an APIStatusError (HTTP status 200) carrying the provider's error body."""
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error: dict[str, Any] = body.get("error") if isinstance(body.get("error"), dict) else {}  # type: ignore[assignment]
        if error.get("type") == "overloaded_error" or exc.status_code == 529:
            return "overloaded_error"
    return "api_error"


def accumulate(message: dict[str, Any], event: dict[str, Any]) -> None:
    """Fold one stream event into the Message JSON it describes."""
    kind = event.get("type")
    if kind == "message_start":
        message.update(event.get("message") or {})
        message.setdefault("content", [])
        message["usage"] = dict(message.get("usage") or {})
    elif kind == "content_block_start":
        blocks = message.setdefault("content", [])
        block = dict(event.get("content_block") or {})
        index = int(event.get("index", len(blocks)))
        while len(blocks) <= index:
            blocks.append({})
        blocks[index] = block
    elif kind == "content_block_delta":
        blocks = message.setdefault("content", [])
        index = int(event.get("index", 0))
        if index >= len(blocks):
            return
        block = blocks[index]
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif delta.get("type") == "input_json_delta":
            block["_partial_json"] = block.get("_partial_json", "") + delta.get("partial_json", "")
        elif delta.get("type") == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
    elif kind == "content_block_stop":
        blocks = message.get("content") or []
        index = int(event.get("index", 0))
        if index < len(blocks) and "_partial_json" in blocks[index]:
            raw = blocks[index].pop("_partial_json")
            try:
                blocks[index]["input"] = json.loads(raw) if raw else {}
            except ValueError:
                blocks[index]["input"] = {}
    elif kind == "message_delta":
        delta = event.get("delta") or {}
        for key in ("stop_reason", "stop_sequence"):
            if key in delta:
                message[key] = delta[key]
        usage = message.setdefault("usage", {})
        for key, value in (event.get("usage") or {}).items():
            if value is not None:
                usage[key] = value

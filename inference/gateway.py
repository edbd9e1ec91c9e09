"""The one service behind /v1/messages, the conversations API and the web chat.

consent -> access policy -> quota -> failover router -> usage -> audit record

`gateway_admit` (inference.admission) runs every check and reserves the quota; `gateway_complete` /
`gateway_stream` make the call, settle the quota and record usage and the audit entry in one transaction (with
the caller's own writes, such as the chat's assistant message, through `persist`). Prompts and completions are
never logged: the audit entry holds keyed hashes of them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterator
from decimal import Decimal
from typing import Any, TypeVar

from access.budgets import budget_release
from access.quotas import quota_release
from audit.services import audit_event
from config.http import sse_frame
from config.tracing import current_trace_id
from inference.admission import gateway_admit
from inference.calls import (
    STREAM_FAILED_MESSAGE,
    Admitted,
    Call,
    ConsentRequired,
    InvalidRequest,
    Persist,
    QuotaUnavailable,
    request_id_for,
)
from inference.catalog.pricing import MICROS_PER_USD, TOKENS_PER_MTOK, Price, Tokens, cost_micros, price_at
from inference.catalog.selectors import CatalogEntry
from inference.errors import InferenceError
from inference.records import CallRecord, Counts, RecordsUnavailable, record_durable, record_now, record_submit
from inference.router import route, route_stream
from inference.services import UsageCount
from inference.types import Attempt

__all__ = ["Admitted", "Call", "ConsentRequired", "InvalidRequest", "Persist", "QuotaUnavailable",
           "gateway_admit", "gateway_complete", "gateway_stream", "request_id_for"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


# --- the call and its records ------------------------------------------------------------------------

# A price's four per-million-token prices as integers times 10**scale, by the price's id (kept with the price, so a
# reused id is noticed): (price, scale, (input, output, cache read, cache write)).
_scaled_prices: dict[int, tuple[Price, int, tuple[int, ...]]] = {}
_SCALED_PRICES_MAX = 256
_EXACT_BELOW = 10**20  # sums far inside Decimal's 28 digits: cost_micros computes them without rounding too


def _scaled(price: Price) -> tuple[Price, int, tuple[int, ...]] | None:
    found = _scaled_prices.get(id(price))
    if found is not None and found[0] is price:
        return found
    parts = (price.input, price.output, price.cache_read, price.cache_write)
    if not all(part.is_finite() for part in parts):
        return None
    scale = max(0, *(-int(part.as_tuple().exponent) for part in parts))
    numbers = tuple(int(part.scaleb(scale)) for part in parts)
    if any(Decimal(number).scaleb(-scale) != part for number, part in zip(numbers, parts, strict=True)):
        return None  # not exactly representable (never for a price row): cost_micros prices it
    if len(_scaled_prices) >= _SCALED_PRICES_MAX:
        _scaled_prices.clear()
    found = _scaled_prices[id(price)] = (price, scale, numbers)
    return found


def _cost_micros(price: Price | None, tokens: Tokens, *, batch: bool) -> int:
    """cost_micros(price, tokens, batch=batch), the same integer, in integers (a quarter of its CPU): the micro-USD
    are sum(tokens x USD per million tokens) exactly (MICROS_PER_USD == TOKENS_PER_MTOK), rounded half up. A batch
    discount, a negative or huge sum, or a price not exactly scaled go to cost_micros itself."""
    if price is None:
        return 0
    scaled = None if batch and price.batch_discount_percent else _scaled(price)
    if scaled is None or MICROS_PER_USD != TOKENS_PER_MTOK:
        return cost_micros(price, tokens, batch=batch)
    _price, scale, (input_price, output_price, read_price, write_price) = scaled
    total = (tokens.input * input_price + tokens.output * output_price + tokens.cache_read * read_price
             + tokens.cache_write * write_price)
    if not 0 <= total < _EXACT_BELOW:
        return cost_micros(price, tokens, batch=batch)
    unit: int = 10**scale
    return (2 * total + unit) // (2 * unit)  # half up: total / unit + 1/2, floored


def _call_record(admitted: Admitted, *, message: dict[str, Any] | None, provider: str, region: str, model_id: str,
                 attempts: list[Attempt], status: str, error: str = "", incomplete: bool = False) -> CallRecord:
    """Describe the call's records and its metrics (counted with them); everything from the request is resolved
    here."""
    call = admitted.call
    usage = (message or {}).get("usage") or {}
    input_tokens, output_tokens = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    latency_ms = int((time.monotonic() - admitted.started) * 1000)
    # Counted by whoever commits the records (records_count): the batch writer, off the request thread, in one
    # increment per tenant and label for a whole batch instead of five mmap writes per call here.
    failovers = tuple(attempt.target for attempt in attempts if attempt.outcome == "failover")
    counts = Counts(call.tenant.schema_name, call.source, status, latency_ms / 1000, input_tokens, output_tokens,
                    failovers)
    metadata: dict[str, Any] = {
        "source": call.source, "auth": call.auth_method, **call.auth_metadata,
        "provider": provider, "region": region, "provider_model_id": model_id,
        "attempts": [a.as_dict() for a in attempts], "incomplete": incomplete,
        "max_tokens": admitted.decision.max_tokens, "requested_max_tokens": admitted.decision.requested_max_tokens,
    }
    trace_id = current_trace_id() or getattr(call.request, "trace_id", "")
    if trace_id:
        metadata["trace_id"] = trace_id  # the call's OpenTelemetry trace (docs/observability.md)
    if admitted.decision.clamp_reason:
        metadata["clamp_reason"] = admitted.decision.clamp_reason
    params = admitted.message_request.params
    model = admitted.entry.model_id
    # The session digest in the personal fields is keyed by the call's tenant.
    audit = audit_event(event_type="model_call", user=call.user, request=call.request, model=model,
                        input_payload={"system": params.get("system"), "messages": params.get("messages")},
                        output_payload=(message or {}).get("content"), input_tokens=input_tokens,
                        output_tokens=output_tokens, latency_ms=latency_ms, status=status, metadata=metadata,
                        error=error, tenant=call.tenant)
    settle = status == "success" or bool(message)
    audit.request_id = call.request_id
    # Priced now, with the price in effect at the call's time, and stored with its usage (docs/costs.md).
    tokens = Tokens(input=input_tokens, output=output_tokens,
                    cache_read=int(usage.get("cache_read_input_tokens") or 0),
                    cache_write=int(usage.get("cache_creation_input_tokens") or 0))
    cost = _cost_micros(price_at(model, provider, audit.timestamp), tokens, batch=call.source == "batch")
    return CallRecord(tenant=call.tenant, request_id=call.request_id, audit=audit, reservation=admitted.reservation,
                      usage=UsageCount(call.user.pk, model, provider, input_tokens, output_tokens, status != "success",
                                       request_id=call.request_id, day=audit.timestamp.date(),
                                       charged_tokens=input_tokens + output_tokens if settle else 0,
                                       cache_read_tokens=tokens.cache_read, cache_write_tokens=tokens.cache_write,
                                       cost_micros=cost, api_key=str(call.auth_metadata.get("api_key_prefix") or "")),
                      used_tokens=input_tokens + output_tokens, settle=settle, budget=admitted.budget, counts=counts)


def _record(admitted: Admitted, *, message: dict[str, Any] | None, provider: str, region: str, model_id: str,
            attempts: list[Attempt], status: str, error: str = "", incomplete: bool = False,
            persist: Persist | None = None, background: bool = False) -> tuple[CallRecord, Any]:
    """Write the call's records now, or with `background` hand them to the batch writer and return its ticket
    (record_durable waits on it); never `background` with `persist`: the caller's own writes belong in the same
    transaction, now."""
    try:
        record = _call_record(admitted, message=message, provider=provider, region=region, model_id=model_id,
                              attempts=attempts, status=status, error=error, incomplete=incomplete)
        if persist is not None:
            record_now(record, lambda: persist(message, provider, region))
        elif background:
            return record, record_submit(record)
        else:
            record_now(record)
    except BaseException:
        # No record was committed or handed to the writer (the database refused it, or building it failed): no
        # settlement will come for this call, so its reservations go back now instead of staying held until the
        # reaper's TTL (the day's counter read more than the recorded usage meanwhile). Each release happens once
        # (Reservation.settled); a record committed all the same (a COMMIT whose answer was lost) is counted by the
        # settlement recovery at the next start (inference/settle_recovery.py).
        try:
            quota_release(admitted.reservation)
            budget_release(admitted.budget)
        except Exception:  # Redis too: the reaper gives the quota back after its TTL; the call's error stands
            logger.warning("could not give back the reservation of an unrecorded call", exc_info=True)
        raise
    return record, None


def _public_message(message: dict[str, Any], entry: CatalogEntry) -> dict[str, Any]:
    """The provider's Message with Atrium's model id (callers asked for a catalog model, not a Bedrock id)."""
    message = dict(message)
    message["model"] = entry.model_id
    return message


def _hedge_delay_s(tenant: Any) -> float | None:
    """The tenant's hedging delay (ms in its policy; 0 turns hedging off for it), else None: the setting."""
    delay = getattr(tenant, "hedge_delay_ms", None)
    return None if delay is None else delay / 1000


def _start(admitted: Admitted, router: Callable[..., T], *, background: bool = False) -> T:
    """Run the router; when no provider could start, record the failure (usage, audit) and re-raise. With
    `background` the failure's records join the batch writer's next commit (under a provider outage every call
    fails at once: one transaction each would queue them all on the chain lock)."""
    try:
        return router(admitted.message_request, admitted.targets, admissions=admitted.admissions,
                      hedge_delay_s=_hedge_delay_s(admitted.call.tenant))
    except InferenceError as exc:
        attempts = list(getattr(exc, "attempts", []) or [])
        # Attributed to the provider that answered (a 400) or was tried last, never to "".
        record, ticket = _record(admitted, message=None, provider=exc.provider or "none", region=exc.region,
                                 model_id=exc.model_id, attempts=attempts, status="error", error=exc.message,
                                 background=background)
        if ticket is not None:
            with contextlib.suppress(RecordsUnavailable):  # queued all the same; the caller gets the call's error
                record_durable(record, ticket)
        raise
    except BaseException:
        quota_release(admitted.reservation)
        budget_release(admitted.budget)
        raise


def gateway_complete(admitted: Admitted, persist: Persist | None = None, *,
                     background: bool = False) -> dict[str, Any]:
    """Non-streaming call. Returns the Anthropic Message JSON; raises InferenceError subclasses.

    With `background` (the /v1 view), a successful call's records (usage, audit, quota settlement) are written
    by this process's batch writer (inference.recorder) after the response, so they add no latency to the call.
    """
    result = _start(admitted, route, background=background and persist is None)
    message = _public_message(result.message, admitted.entry)
    record, ticket = _record(admitted, message=message, provider=result.provider, region=result.region,
                             model_id=result.model_id, attempts=result.attempts, status="success", persist=persist,
                             background=background)
    if ticket is not None:
        record_durable(record, ticket)  # the response completes only once its records are durable
    return message


def gateway_stream(admitted: Admitted, persist: Persist | None = None, *,
                   background: bool = False) -> Iterator[dict[str, Any]]:
    """Open the stream now (failover happens here, before the first byte); iterate for Anthropic events.

    Raises InferenceError subclasses before returning if no provider could start. After the first event an
    upstream failure ends the iteration with an `error` event; the partial answer is recorded as incomplete.
    With `background` (and no `persist`), the records are written by the batch writer, as in gateway_complete.
    """
    stream = _start(admitted, route_stream, background=background and persist is None)
    model_id = admitted.entry.model_id

    def public(event: dict[str, Any]) -> dict[str, Any]:
        """The event as the caller sees it: Atrium's model id in message_start; an error says what the caller can
        act on (the detail, target and upstream reason, is recorded)."""
        kind = event.get("type")
        if kind == "message_start":
            return {**event, "message": {**(event.get("message") or {}), "model": model_id}}
        if kind == "error":
            upstream = event.get("error")
            kind = upstream.get("type") if isinstance(upstream, dict) else None
            return {"type": "error", "error": {"type": kind or "api_error", "message": STREAM_FAILED_MESSAGE}}
        return event

    def record(finished: bool) -> tuple[CallRecord, Any] | None:
        """Record the call (as incomplete unless the stream `finished` and the provider's did), then let the
        upstream connection go."""
        incomplete = stream.incomplete or not finished
        message = _public_message(stream.message, admitted.entry) if stream.message else None
        if message is not None:
            message["incomplete"] = incomplete
        error = (stream.error or {}).get("message", "") if stream.error else (
            "" if finished else "the client went away before the end of the stream")
        status = "success" if not incomplete else "incomplete"
        recorded = None
        try:
            recorded = _record(admitted, message=message, provider=stream.provider, region=stream.region,
                               model_id=stream.model_id, attempts=stream.attempts, status=status, error=error,
                               incomplete=incomplete, persist=persist, background=background)
        except Exception:  # its reservations went back (_record)
            logger.exception("could not record a streamed model call")
        stream.close()
        return recorded

    def durable(recorded: tuple[CallRecord, Any] | None) -> dict[str, Any] | None:
        """None once the records are durable; else the error event that replaces message_stop."""
        try:
            if recorded is None:
                raise RecordsUnavailable()
            record, ticket = recorded
            if ticket is not None:
                record_durable(record, ticket)
        except RecordsUnavailable as exc:
            return {"type": "error", "error": {"type": exc.error_type, "message": exc.message}}
        return None

    def events() -> Generator[dict[str, Any], None, None]:
        finished = False
        held: dict[str, Any] | None = None  # message_stop, sent once the records are durable
        recorded = None
        try:
            for event in stream:
                event = public(event)
                if background and event.get("type") == "message_stop":
                    held = event
                    continue
                yield event
            finished = True
        finally:
            recorded = record(finished)
        if held is None:
            return
        yield durable(recorded) or held

    def pieces() -> Generator[bytes, None, None]:
        """The stream's SSE bytes, a piece per read of the provider's (its events as they came, or framed again
        when changed): the first piece as soon as the first event is in hand, with those that arrived with it.
        message_stop is held until the records are durable, then written with the events of its read (one write,
        not two) unless those were the first piece, which never waits for the records."""
        finished = False
        held = b""  # message_stop's frame
        tail = b""  # the events that arrived with message_stop after the first piece: written with it
        first = True
        recorded = None
        try:
            for parts in stream.pieces():
                if len(parts) == 1 and type(parts[0]) is bytes:
                    data = parts[0]  # events relayed as they came, the usual read
                else:
                    out = []
                    for part in parts:
                        if type(part) is bytes:
                            out.append(part)
                            continue
                        event = public(part)
                        if background and event.get("type") == "message_stop":
                            held = sse_frame(event)
                            continue
                        out.append(sse_frame(event))
                    data = out[0] if len(out) == 1 else b"".join(out)
                if tail:
                    yield tail  # more came after message_stop: what came before it goes first
                    tail = b""
                if held and not first:
                    tail = data
                elif data:
                    yield data
                first = False
            finished = True
        finally:
            recorded = record(finished)
        if not held:
            return
        failure = durable(recorded)
        yield tail + (sse_frame(failure) if failure is not None else held)

    return Events(events(), stream.ready, pieces)


class Events:
    """A streamed call's events (iterate it), and `ready()`: whether the next one has arrived already, so that
    taking it will not wait (config.http.sse writes such events together). Or, instead of iterating it,
    `pieces()`: the stream as SSE bytes, what arrived together in one piece (config.http.sse without
    `first_alone`)."""

    __slots__ = ("_events", "pieces", "ready")

    def __init__(self, events: Generator[dict[str, Any], None, None], ready: Callable[[], bool],
                 pieces: Callable[[], Generator[bytes, None, None]] | None = None) -> None:
        self._events = events
        self.ready = ready
        self.pieces = pieces

    def __iter__(self) -> Generator[dict[str, Any], None, None]:
        return self._events

    def __next__(self) -> dict[str, Any]:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

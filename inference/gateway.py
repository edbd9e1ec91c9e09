"""The one service behind /v1/messages, the conversations API and the web chat.

consent -> access policy -> quota -> failover router -> usage -> audit record

`gateway_admit` runs every check and reserves the quota; `gateway_complete` / `gateway_stream` make the call,
settle the quota and record usage and the audit entry in one transaction (with the caller's own writes, such as
the chat's assistant message, through `persist`). Prompts and completions are never logged: the audit entry
holds keyed hashes of them.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django_tenants.utils import tenant_context
from redis.exceptions import RedisError

from access.errors import NotPermitted, QuotaExceeded
from access.policy import PolicyDecision, policy_check
from access.quotas import (
    RESERVE_LUA,
    QuotaRebuildNeeded,
    Reservation,
    quota_outcome,
    quota_plan,
    quota_rebuild,
    quota_release,
)
from audit.services import audit_event, audit_record, consent_required
from config.redis import redis_script
from config.tracing import current_trace_id
from inference import metrics
from inference.breaker import ALLOW_LUA, breaker_key
from inference.catalog.selectors import CatalogEntry, catalog_entry
from inference.errors import InferenceError, ModelNotFound
from inference.records import (
    CallRecord,
    RecordsUnavailable,
    record_durable,
    record_now,
    record_submit,
    records_available,
    usage_recorded,
)
from inference.router import route, route_stream
from inference.services import UsageCount
from inference.targets import targets_for_tenant
from inference.types import Attempt, MessageRequest, ProviderTarget

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Called inside the transaction that records usage and audit: (message or None, provider, region).
Persist = Callable[[dict[str, Any] | None, str, str], None]

# Body fields the gateway owns; everything else is passed to the provider as the caller sent it.
_OWN = {"model", "stream"}
ROLES = {"user", "assistant"}


class InvalidRequest(InferenceError):
    status = 400
    error_type = "invalid_request_error"


class QuotaUnavailable(InferenceError):
    """Redis (quotas, breakers) does not answer: nothing can be admitted."""

    status = 503
    error_type = "api_error"

    def __init__(self) -> None:
        super().__init__("Atrium cannot check quotas right now. Retry in a few seconds.")


class ConsentRequired(NotPermitted):
    def __init__(self, version: int, url: str) -> None:
        super().__init__(f"Accept the organisation's processing notice (version {version}) at {url} before using "
                         f"models.", permission=None)
        self.version = version
        self.url = url


@dataclass
class Call:
    tenant: Any
    user: Any
    body: dict[str, Any]
    source: str  # "api" (/v1), "chat" (conversations API and web chat)
    request: Any = None  # the HttpRequest, for audit IP / user agent / session
    auth_method: str = "session"
    auth_metadata: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""  # the call's idempotency key (request_id_for)

    def __post_init__(self) -> None:
        if not self.request_id:
            self.request_id = request_id_for(self.request)


def request_id_for(request: Any) -> str:
    """The request id Atrium generated for this request (the response's `request-id` header). A client-supplied
    X-Request-Id is kept for log correlation but cannot be the idempotency key (a client reusing one would make
    a second call's record look like a retry), so it gets a unique suffix."""
    request_id = str(getattr(request, "request_id", "") or "")
    if not request_id:
        return f"req_{uuid.uuid4().hex}"
    if request is not None and request.headers.get("X-Request-Id", "") == request_id:
        return f"{request_id}.{uuid.uuid4().hex[:16]}"
    return request_id


@dataclass
class Admitted:
    call: Call
    entry: CatalogEntry
    decision: PolicyDecision
    reservation: Reservation
    message_request: MessageRequest
    started: float
    targets: list[ProviderTarget] = field(default_factory=list)
    admissions: dict[str, int] = field(default_factory=dict)  # breaker answers obtained at admission

    @property
    def clamp_headers(self) -> dict[str, str]:
        if not self.decision.clamped:
            return {}
        return {"atrium-max-tokens-clamped": f"requested={self.decision.requested_max_tokens}; "
                                             f"granted={self.decision.max_tokens}; reason={self.decision.clamp_reason}"}


# --- validation ------------------------------------------------------------------------------------

def _validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: Field required (a model id such as claude-sonnet-5-5, or a tier).")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required, an integer of at least 1.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: Field required, a non-empty list of {role, content} objects.")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidRequest(f"messages.{index}.role: must be 'user' or 'assistant'.")
        content = message.get("content")
        if not isinstance(content, str | list) or (isinstance(content, list) and not content):
            raise InvalidRequest(f"messages.{index}.content: a string or a non-empty list of content blocks.")
        if isinstance(content, list) and not all(isinstance(b, dict) and "type" in b for b in content):
            raise InvalidRequest(f"messages.{index}.content: every content block needs a type.")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: must be true or false.")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: a string or a list of text blocks.")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list.")


STREAM_FAILED_MESSAGE = "The provider failed while answering, so the answer is incomplete; try again."
_VISION_BLOCKS = frozenset({"image", "document"})


def _has_images(body: dict[str, Any]) -> bool:
    """Whether any image or document block appears anywhere in the messages, however deeply nested (inside a
    tool_result, a search result, a future container block): the vision permission must see them all."""
    stack: list[Any] = [body.get("messages")]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in _VISION_BLOCKS:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _with_notice(system: Any, notice: str) -> Any:
    """Append the tenant's processing notice to the system prompt, as the seed does."""
    notice = notice.strip()
    if not notice:
        return system
    if system is None or system == "":
        return notice
    if isinstance(system, str):
        return f"{system}\n\n{notice}"
    return [*system, {"type": "text", "text": notice}]


def _estimate_input_tokens(body: dict[str, Any]) -> int:
    """A cheap upper-ish estimate for the reservation (about 4 characters a token); settled exactly afterwards."""
    size = sum(len(str(m.get("content", ""))) for m in body.get("messages") or []) + len(str(body.get("system", "")))
    return size // 4 + 1


def consent_url(call: Call) -> str:
    host = call.request.get_host() if call.request is not None else ""
    scheme = "https" if call.request is not None and call.request.is_secure() else "http"
    return f"{scheme}://{host}/consent/" if host else "/consent/"


# --- admission -------------------------------------------------------------------------------------

def _refused(call: Call, exc: Exception, *, model: str = "", reason: str) -> None:
    label = call.tenant.schema_name
    if isinstance(exc, QuotaExceeded):
        metrics.QUOTA_REFUSALS.labels(label, exc.limit).inc()
    else:
        metrics.POLICY_REFUSALS.labels(label, reason).inc()
    metrics.REQUESTS.labels(label, call.source, "refused").inc()
    try:
        with transaction.atomic():
            audit_record(event_type="model_call_refused", user=call.user, request=call.request, model=model,
                         status="refused", metadata={"reason": reason, "source": call.source,
                                                     "auth": call.auth_method, **call.auth_metadata},
                         error=str(getattr(exc, "message", exc)))
    except Exception:
        logger.exception("could not audit a refused model call")


# One Redis round trip admits a call: the quota reservation and, only when it is granted, the circuit breaker of
# the targets serving the model, in the router's order, up to the first one it may call (the router uses those
# answers instead of asking again). KEYS: quota keys, then breaker keys. ARGV: number of quota keys, number of
# quota arguments, the quota arguments, now (s), probe lease (s). Returns {quota answer, breaker answers}.
_ADMIT = RESERVE_LUA + ALLOW_LUA + """
local nq, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local qk, qa = {}, {}
for i = 1, nq do qk[i] = KEYS[i] end
for i = 1, na do qa[i] = ARGV[2 + i] end
local granted = quota_reserve(qk, qa)
if granted[1] ~= 1 then return {granted, {}} end
local now, probe_ttl = tonumber(ARGV[na + 3]), tonumber(ARGV[na + 4])
local codes = {}
for j = nq + 1, #KEYS do
  local code = breaker_allow(KEYS[j], now, probe_ttl)
  codes[#codes + 1] = code
  if code ~= 0 then break end
end
return {granted, codes}
"""


def _reserve(call: Call, entry: CatalogEntry, tokens: int,
             targets: list[ProviderTarget]) -> tuple[Reservation, dict[str, int]]:
    """Reserve the quota and consult the breakers in one round trip (_ADMIT); raises QuotaExceeded."""
    plan = quota_plan(tenant=call.tenant, user=call.user, tokens=tokens)
    served = [t for t in targets if entry.provider_model_id(t.provider, t.region) is not None]
    keys = plan.keys + [breaker_key(t.breaker_name) for t in served]
    args = [len(plan.keys), len(plan.args), *plan.args, time.time(), settings.ATRIUM_BREAKER_PROBE_TTL_S]
    for _attempt in range(3):
        try:
            granted, codes = redis_script(_ADMIT)(keys=keys, args=args)
        except RedisError as exc:
            raise QuotaUnavailable() from exc
        try:
            reservation = quota_outcome(plan, granted)
        except QuotaRebuildNeeded:
            # Redis came back empty: the day's token counters are rebuilt from recorded usage before admitting.
            quota_rebuild(tenant=call.tenant, recorded=usage_recorded)
            continue
        return reservation, {target.key: int(code) for target, code in zip(served, codes, strict=False)}
    raise RecordsUnavailable()


def gateway_admit(call: Call) -> Admitted:
    """Every check before a model call, in order; raises a typed error naming what stopped it."""
    _validate(call.body)
    body = call.body
    name = str(body["model"]).strip()
    entry = catalog_entry(name)
    if entry is None:
        metrics.REQUESTS.labels(call.tenant.schema_name, call.source, "not_found").inc()
        raise ModelNotFound(f"model: {name} (not in this Atrium's catalog; GET /v1/models lists yours)")
    pending = consent_required(call.user, call.tenant)
    if pending is not None:
        exc = ConsentRequired(pending.version, consent_url(call))
        _refused(call, exc, model=entry.model_id, reason="consent")
        raise exc
    try:
        decision = policy_check(user=call.user, tenant=call.tenant, model=entry.model_id, tier=entry.tier,
                                max_tokens=int(body["max_tokens"]), has_tools=bool(body.get("tools")),
                                has_images=_has_images(body))
    except NotPermitted as exc:
        _refused(call, exc, model=entry.model_id, reason=exc.permission or "policy")
        raise
    if not records_available(call.tenant):
        unavailable = RecordsUnavailable()
        _refused(call, unavailable, model=entry.model_id, reason="records_unavailable")
        raise unavailable
    targets = targets_for_tenant(call.tenant)
    try:
        reservation, admissions = _reserve(call, entry, decision.max_tokens + _estimate_input_tokens(body), targets)
    except QuotaExceeded as exc:
        _refused(call, exc, model=entry.model_id, reason=exc.limit)
        raise
    params = {k: v for k, v in body.items() if k not in _OWN}
    params["max_tokens"] = decision.max_tokens
    system = _with_notice(params.get("system"), getattr(call.tenant, "processing_notice", "") or "")
    if system is not None:
        params["system"] = system
    return Admitted(call=call, entry=entry, decision=decision, reservation=reservation,
                    message_request=MessageRequest(model=entry.model_id, params=params), started=time.monotonic(),
                    targets=targets, admissions=admissions)


# --- the call and its records ------------------------------------------------------------------------

def _call_record(admitted: Admitted, *, message: dict[str, Any] | None, provider: str, region: str, model_id: str,
                 attempts: list[Attempt], status: str, error: str = "", incomplete: bool = False) -> CallRecord:
    """Count the call in the metrics and describe its records; everything from the request is resolved here."""
    call = admitted.call
    usage = (message or {}).get("usage") or {}
    input_tokens, output_tokens = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    latency_ms = int((time.monotonic() - admitted.started) * 1000)
    label = call.tenant.schema_name
    metrics.REQUESTS.labels(label, call.source, status).inc()
    metrics.LATENCY.labels(label, call.source).observe(latency_ms / 1000)
    metrics.TOKENS.labels(label, "input").inc(input_tokens)
    metrics.TOKENS.labels(label, "output").inc(output_tokens)
    for attempt in attempts:
        if attempt.outcome == "failover":
            metrics.FAILOVERS.labels(label, attempt.target).inc()
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
    # The session digest in the personal fields is keyed by the tenant (the request's own, normally already active).
    on_tenant = getattr(connection, "tenant", None) is call.tenant
    with contextlib.nullcontext() if on_tenant else tenant_context(call.tenant):
        audit = audit_event(event_type="model_call", user=call.user, request=call.request, model=model,
                            input_payload={"system": params.get("system"), "messages": params.get("messages")},
                            output_payload=(message or {}).get("content"), input_tokens=input_tokens,
                            output_tokens=output_tokens, latency_ms=latency_ms, status=status, metadata=metadata,
                            error=error)
    settle = status == "success" or bool(message)
    audit.request_id = call.request_id
    return CallRecord(tenant=call.tenant, request_id=call.request_id, audit=audit, reservation=admitted.reservation,
                      usage=UsageCount(call.user.pk, model, provider, input_tokens, output_tokens, status != "success",
                                       request_id=call.request_id, day=audit.timestamp.date(),
                                       charged_tokens=input_tokens + output_tokens if settle else 0),
                      used_tokens=input_tokens + output_tokens, settle=settle)


def _record(admitted: Admitted, *, message: dict[str, Any] | None, provider: str, region: str, model_id: str,
            attempts: list[Attempt], status: str, error: str = "", incomplete: bool = False,
            persist: Persist | None = None, background: bool = False) -> tuple[CallRecord, Any]:
    """Write the call's records now, or with `background` hand them to the batch writer and return its ticket
    (record_durable waits on it); never `background` with `persist`: the caller's own writes belong in the same
    transaction, now."""
    record = _call_record(admitted, message=message, provider=provider, region=region, model_id=model_id,
                          attempts=attempts, status=status, error=error, incomplete=incomplete)
    if persist is not None:
        record_now(record, lambda: persist(message, provider, region))
    elif background:
        return record, record_submit(record)
    else:
        record_now(record)
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


def _start(admitted: Admitted, router: Callable[..., T]) -> T:
    """Run the router; when no provider could start, record the failure (usage, audit) and re-raise."""
    try:
        return router(admitted.message_request, admitted.targets, admissions=admitted.admissions,
                      hedge_delay_s=_hedge_delay_s(admitted.call.tenant))
    except InferenceError as exc:
        attempts = list(getattr(exc, "attempts", []) or [])
        # Attributed to the provider that answered (a 400) or was tried last, never to "".
        _record(admitted, message=None, provider=exc.provider or "none", region=exc.region, model_id=exc.model_id,
                attempts=attempts, status="error", error=exc.message)
        raise
    except BaseException:
        quota_release(admitted.reservation)
        raise


def gateway_complete(admitted: Admitted, persist: Persist | None = None, *,
                     background: bool = False) -> dict[str, Any]:
    """Non-streaming call. Returns the Anthropic Message JSON; raises InferenceError subclasses.

    With `background` (the /v1 view), a successful call's records (usage, audit, quota settlement) are written
    by this process's batch writer (inference.recorder) after the response, so they add no latency to the call.
    """
    result = _start(admitted, route)
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
    stream = _start(admitted, route_stream)

    def events() -> Iterator[dict[str, Any]]:
        finished = False
        held: dict[str, Any] | None = None  # message_stop, sent once the records are durable
        pending: list[tuple[CallRecord, Any]] = []
        try:
            for event in stream:
                if event.get("type") == "message_start":
                    event = {**event, "message": {**(event.get("message") or {}), "model": admitted.entry.model_id}}
                elif event.get("type") == "error":
                    # The detail (target, upstream reason) is recorded below; the caller learns what it can act on.
                    upstream = event.get("error")
                    kind = upstream.get("type") if isinstance(upstream, dict) else None
                    event = {"type": "error", "error": {"type": kind or "api_error",
                                                        "message": STREAM_FAILED_MESSAGE}}
                if background and event.get("type") == "message_stop":
                    held = event
                    continue
                yield event
            finished = True
        finally:
            incomplete = stream.incomplete or not finished
            message = _public_message(stream.message, admitted.entry) if stream.message else None
            if message is not None:
                message["incomplete"] = incomplete
            error = (stream.error or {}).get("message", "") if stream.error else (
                "" if finished else "the client went away before the end of the stream")
            status = "success" if not incomplete else "incomplete"
            try:
                pending.append(_record(admitted, message=message, provider=stream.provider, region=stream.region,
                                       model_id=stream.model_id, attempts=stream.attempts, status=status,
                                       error=error, incomplete=incomplete, persist=persist, background=background))
            except Exception:
                logger.exception("could not record a streamed model call")
                quota_release(admitted.reservation)
            stream.close()
        if held is None:
            return
        record, ticket = pending[0] if pending else (None, None)
        try:
            if record is None:
                raise RecordsUnavailable()
            if ticket is not None:
                record_durable(record, ticket)
        except RecordsUnavailable as exc:
            yield {"type": "error", "error": {"type": exc.error_type, "message": exc.message}}
            return
        yield held

    return events()

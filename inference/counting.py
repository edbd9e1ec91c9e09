"""POST /v1/messages/count_tokens: the same checks and failover as a Messages call, an audit entry, no quota.

consent -> access policy (the model, tools, images; no max_tokens clamp) -> the failover router, one
non-streaming call per target (the Anthropic API's `/v1/messages/count_tokens`, Vertex's `count-tokens:rawPredict`,
Bedrock's `CountTokens`; inference.providers.counting) -> a `count_tokens` audit entry. Nothing is reserved or
settled and no usage row is written: counting tokens costs the tenant nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from audit.services import audit_record
from inference import metrics
from inference.admission import model_admit
from inference.calls import Call, InvalidRequest, validate_messages
from inference.errors import InferenceError
from inference.providers.base import provider_client
from inference.providers.counting import provider_count_tokens
from inference.router import Walk, first_byte_budget
from inference.targets import targets_for_tenant
from inference.types import Attempt, MessageRequest, ProviderTarget

logger = logging.getLogger(__name__)

# Fields the count_tokens endpoint takes (Anthropic's documented body); anything else is refused by name.
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})


@dataclass
class CountResult:
    input_tokens: int
    provider: str
    region: str
    model_id: str
    attempts: list[Attempt]


def _validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: Field required (a model id such as claude-sonnet-5-5, or a tier).")
    unknown = sorted(set(body) - COUNT_FIELDS)
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: Extra inputs are not permitted (count_tokens takes "
                             f"{', '.join(sorted(COUNT_FIELDS))}).")
    validate_messages(body.get("messages"))
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: a string or a list of text blocks.")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list.")
    thinking = body.get("thinking")
    if thinking is not None and not isinstance(thinking, dict):
        raise InvalidRequest("thinking: must be an object such as {\"type\": \"enabled\", \"budget_tokens\": 1024}.")


def route_count_tokens(request: MessageRequest, targets: Sequence[ProviderTarget], *,
                       deadline_s: float | None = None,
                       admissions: Mapping[str, int] | None = None) -> CountResult:
    """Ask each healthy target in order until one counts; failover, breakers and attempts as for Messages calls.
    Each attempt's whole answer must come within the target's time-to-first-byte budget (a count is one short
    JSON answer)."""
    walk = Walk(request, targets, deadline_s, admissions, hedge_delay_s=0)
    while True:
        remaining = walk.deadline - time.monotonic()
        if remaining <= 0:
            raise walk.exhausted(deadline=True)
        candidate = walk.next_candidate()
        if candidate is None:
            raise walk.exhausted()
        target, model_id, admission = candidate
        t0 = time.monotonic()
        try:
            client = provider_client(target)
            tokens = provider_count_tokens(client, target, model_id=model_id, params=request.params,
                                           betas=request.betas, timeout=min(first_byte_budget(target), remaining))
        except Exception as exc:
            walk.failed(target, model_id, exc, t0)  # raises UpstreamRequestError on the caller's own error
            continue
        walk.succeeded(target, model_id, admission, t0)
        return CountResult(tokens, target.provider, target.region, model_id, walk.attempts)


def count_tokens(call: Call) -> dict[str, Any]:
    """The whole endpoint: checks, the router, the audit entry. Returns {"input_tokens": N}."""
    _validate(call.body)
    body = call.body
    entry, _decision = model_admit(call, max_tokens=1)  # no output: the policy's max_tokens clamp does not apply
    params = {k: v for k, v in body.items() if k != "model"}
    betas = call.betas
    request = MessageRequest(model=entry.model_id, params=params, betas=betas)
    started = time.monotonic()
    metadata: dict[str, Any] = {"source": call.source, "auth": call.auth_method, **call.auth_metadata,
                                "operation": "count_tokens", "betas": list(betas)}
    try:
        result = route_count_tokens(request, targets_for_tenant(call.tenant))
    except InferenceError as exc:
        attempts = list(getattr(exc, "attempts", []) or [])
        _audit(call, entry.model_id, started, status="error", error=exc.message, metadata={
            **metadata, "provider": exc.provider or "none", "region": exc.region, "provider_model_id": exc.model_id,
            "attempts": [a.as_dict() for a in attempts]}, input_tokens=0)
        raise
    _audit(call, entry.model_id, started, status="success", error="", input_tokens=result.input_tokens, metadata={
        **metadata, "provider": result.provider, "region": result.region, "provider_model_id": result.model_id,
        "attempts": [a.as_dict() for a in result.attempts]})
    metrics.REQUESTS.labels(call.tenant.schema_name, "count_tokens", "success").inc()
    return {"input_tokens": result.input_tokens}


def _audit(call: Call, model: str, started: float, *, status: str, error: str, metadata: dict[str, Any],
           input_tokens: int) -> None:
    """One `count_tokens` audit entry, written now (no usage, no quota: nothing to batch with)."""
    params = {k: v for k, v in call.body.items() if k in ("system", "messages")}
    with transaction.atomic():
        entry = audit_record(event_type="count_tokens", user=call.user, request=call.request, model=model,
                             input_payload={"system": params.get("system"), "messages": params.get("messages")},
                             input_tokens=input_tokens, output_tokens=0,
                             latency_ms=int((time.monotonic() - started) * 1000), status=status, metadata=metadata,
                             error=error, request_id=call.request_id)
    logger.debug("count_tokens audited", extra={"audit_id": getattr(entry, "pk", None)})

"""The gateway's admission: every check before a model call, and one Redis round trip that reserves the quota and
the budgets' money and consults the breakers of the targets serving the model.

The Redis side is the composite `ADMISSION` of registered parts (config.admission), in order:
`access.budgets.BUDGET_CHECK` (does the call's largest possible cost fit every budget that applies? read-only, so
a refused call reserves no tokens), `access.quotas.QUOTA` (the token and request reservation), `access.budgets.BUDGET`
(reserves the money; it re-checks, for Redis Cluster where the parts may run as separate scripts) and
`inference.breaker.BREAKERS` (the targets' breakers in the router's order, up to the first that may be called; only
a granted call claims a half-open probe). The budget parts run only when a budget applies.
`admission_reserve` is its typed call: the reservations and the breaker answers by target key, or a typed error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from access.budget_rebuild import budget_rebuild
from access.budgets import BUDGET, BUDGET_CHECK, BudgetPlan, BudgetRebuildNeeded, BudgetReservation
from access.errors import BetaNotAllowed, NotPermitted, QuotaExceeded
from access.policy import PolicyDecision, betas_check, policy_check
from access.quotas import (
    QUOTA,
    QuotaRebuildNeeded,
    Reservation,
    quota_plan,
    quota_rebuild,
    quota_release,
    quota_unreserve,
)
from audit.services import audit_record, consent_required
from config.admission import Bound, composite
from inference import metrics
from inference.breaker import BREAKERS, BreakerCheck
from inference.budgeting import budget_plan_for
from inference.calls import (
    OWN_FIELDS,
    Admitted,
    Call,
    ConsentRequired,
    QuotaUnavailable,
    consent_url,
    has_images,
    validate_body,
    with_notice,
)
from inference.catalog.selectors import CatalogEntry, catalog_entry
from inference.errors import ModelNotFound
from inference.records import (
    RecordsUnavailable,
    records_available,
    usage_cost_totals,
    usage_costs_recorded,
    usage_recorded,
)
from inference.targets import targets_for_tenant
from inference.types import MessageRequest, ProviderTarget

logger = logging.getLogger(__name__)

# The budget check first, then the quota, the budgets' reservation and the breakers: a part that refuses stops the
# script before the later parts change anything.
ADMISSION = composite(BUDGET_CHECK.name, QUOTA.name, BUDGET.name, BREAKERS.name)


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


def calls_admitted_since(since: datetime) -> Iterator[tuple[str, int | None, int]]:
    """The current tenant's calls admitted since `since` and recorded (request id, user id, admitted at in ms),
    from their model_call audit entries (admitted = recorded - latency), for the requests-per-minute windows."""
    from audit.models import AuditEntry

    since_ms = int(since.timestamp() * 1000)
    rows = AuditEntry.objects.filter(event_type="model_call", timestamp__gte=since).values_list(
        "pk", "request_id", "user_id", "timestamp", "latency_ms")
    for pk, request_id, user_id, timestamp, latency_ms in rows.iterator(chunk_size=2000):
        at_ms = int(timestamp.timestamp() * 1000) - int(latency_ms or 0)
        if at_ms >= since_ms:
            yield str(request_id or f"audit-{pk}"), user_id, at_ms


def admission_reserve(call: Call, entry: CatalogEntry, tokens: int, targets: list[ProviderTarget],
                      budget: BudgetPlan | None = None,
                      ) -> tuple[Reservation, dict[str, int], BudgetReservation | None]:
    """Reserve the quota (and, with `budget`, the money) and consult the breakers in one round trip (ADMISSION).
    Returns the reservations and the breaker answers by target key; raises QuotaExceeded (BudgetExceeded for a
    budget), QuotaUnavailable (Redis does not answer) or RecordsUnavailable (the counters could not be rebuilt)."""
    served = [t for t in targets if entry.provider_model_id(t.provider, t.region) is not None]
    check = BreakerCheck(targets=[(t.key, t.breaker_name) for t in served])
    for _attempt in range(3):
        plan = quota_plan(tenant=call.tenant, user=call.user, tokens=tokens)
        parts: list[Bound[Any, Any]] = [QUOTA.bind(plan), BREAKERS.bind(check)] if budget is None else [
            BUDGET_CHECK.bind(budget), QUOTA.bind(plan), BUDGET.bind(budget), BREAKERS.bind(check)]
        try:
            answer = ADMISSION.run(*parts)
        except BudgetRebuildNeeded:
            # Redis came back empty: the budgets' counters are rebuilt from recorded usage before admitting.
            try:
                budget_rebuild(schema=call.tenant.schema_name, calls=usage_costs_recorded, totals=usage_cost_totals)
            except RedisError as exc:
                raise QuotaUnavailable() from exc
            continue
        except QuotaRebuildNeeded:
            # Redis came back empty: the day's token counters are rebuilt from recorded usage before admitting.
            try:
                quota_rebuild(tenant=call.tenant, recorded=usage_recorded, admitted=calls_admitted_since)
            except RedisError as exc:
                raise QuotaUnavailable() from exc
            continue
        except RedisError as exc:
            # Also when the script ran and only its answer was lost: the tokens it reserved go back now. (A budget
            # hold it may have taken stays: budget reservations carry no member to find it by.)
            try:
                quota_unreserve(plan)
            except RedisError:
                logger.warning("could not give back the reservation of an admission whose answer was lost "
                               "(the reaper does after its TTL)")
            raise QuotaUnavailable() from exc
        applied = answer.get(BUDGET)
        if applied is not None and applied.refused is not None:
            quota_release(answer[QUOTA])  # another process took the money between the check and the reservation
            raise applied.refused
        return answer[QUOTA], answer.get(BREAKERS) or {}, applied.reservation if applied is not None else None
    raise RecordsUnavailable()


def betas_admit(call: Call) -> None:
    """The request's anthropic-beta names, each allowed by the tenant (BetaNotAllowed, a 400, otherwise), onto
    the call; a name no provider of the tenant's order accepts (ATRIUM_BETA_PROVIDERS) is refused here too."""
    header = call.request.META.get("HTTP_ANTHROPIC_BETA") if call.request is not None else None
    if header is not None:
        call.betas = betas_check(call.tenant, header)
    for name in call.betas:
        providers = settings.ATRIUM_BETA_PROVIDERS.get(name)
        if providers is not None and not any(t.provider in providers for t in targets_for_tenant(call.tenant)):
            raise BetaNotAllowed(f"anthropic-beta: {name} is not accepted by any provider this organisation "
                                 f"uses.", permission="anthropic_beta")


def model_admit(call: Call, *, max_tokens: int, images: bool | None = None) -> tuple[CatalogEntry, PolicyDecision]:
    """What every model endpoint checks first, in order (Messages, count_tokens): the model is in the catalog
    (ModelNotFound), the user accepted the tenant's notice (ConsentRequired), the access policy and the tenant's
    betas allow the call (NotPermitted); each refusal is audited. `images`: has_images(call.body), when the caller
    found it already (validate_body)."""
    name = str(call.body["model"]).strip()
    entry = catalog_entry(name)
    if entry is None:
        raise ModelNotFound(f"model: {name} (not in this Atrium's catalog; GET /v1/models lists yours)")
    pending = consent_required(call.user, call.tenant)
    if pending is not None:
        exc = ConsentRequired(pending.version, consent_url(call))
        _refused(call, exc, model=entry.model_id, reason="consent")
        raise exc
    try:
        decision = policy_check(user=call.user, tenant=call.tenant, model=entry.model_id, tier=entry.tier,
                                max_tokens=max_tokens, has_tools=bool(call.body.get("tools")),
                                has_images=has_images(call.body) if images is None else images)
        betas_admit(call)
    except NotPermitted as exc:
        _refused(call, exc, model=entry.model_id, reason=exc.permission or "policy")
        raise
    return entry, decision


def gateway_admit(call: Call) -> Admitted:
    """Every check before a model call, in order; raises a typed error naming what stopped it."""
    facts = validate_body(call.body)
    body = call.body
    try:
        entry, decision = model_admit(call, max_tokens=int(body["max_tokens"]), images=facts.has_images)
    except ModelNotFound:
        metrics.REQUESTS.labels(call.tenant.schema_name, call.source, "not_found").inc()
        raise
    if not records_available(call.tenant):
        unavailable = RecordsUnavailable()
        _refused(call, unavailable, model=entry.model_id, reason="records_unavailable")
        raise unavailable
    targets = targets_for_tenant(call.tenant)
    params = {k: v for k, v in body.items() if k not in OWN_FIELDS}
    params["max_tokens"] = decision.max_tokens
    system = with_notice(params.get("system"), getattr(call.tenant, "processing_notice", "") or "")
    if system is not None:
        params["system"] = system
    try:
        budget = budget_plan_for(tenant=call.tenant, user=call.user, model_id=entry.model_id, body=params,
                                 api_key_prefix=str(call.auth_metadata.get("api_key_prefix") or ""),
                                 max_tokens=decision.max_tokens)
        reservation, admissions, held = admission_reserve(
            call, entry, decision.max_tokens + facts.input_estimate, targets, budget)
    except QuotaExceeded as exc:
        _refused(call, exc, model=entry.model_id, reason=exc.limit)
        raise
    return Admitted(call=call, entry=entry, decision=decision, reservation=reservation,
                    message_request=MessageRequest(model=entry.model_id, params=params, betas=call.betas),
                    started=time.monotonic(),
                    targets=targets, admissions=admissions, budget=held)

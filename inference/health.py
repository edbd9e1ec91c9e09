"""Provider health checks: a one-token call with the cheapest model per configured target, feeding the breaker.

Targets checked are every target in use (the platform default order and each active tenant's), always with the
platform's (environment) credentials. A failed check opens that target's platform-scope breaker at once; a passing
one closes it. A misconfigured target (no or bad credentials) is reported, and left out of the breaker.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from inference import breaker
from inference.catalog.models import ProviderHealthCheck
from inference.catalog.selectors import catalog_entries
from inference.providers.base import provider_client, provider_create
from inference.router import classify
from inference.targets import parse_target, provider_order_for
from inference.types import ProviderTarget

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthResult:
    target: str
    credentials_source: str
    status: str  # up, down, misconfigured
    http_status: int | None
    latency_ms: int
    model_id: str
    detail: str


def health_targets() -> list[tuple[ProviderTarget, str]]:
    """Every target in use (the platform default order and every active tenant's), with the platform's own
    (environment) credentials only: a check made with a tenant's key would judge that tenant's account (its rate
    limit, its key) and open the breaker every tenant on the platform's credentials shares. Tenants' own
    credential scopes have breakers of their own, fed by their traffic and its half-open probes."""
    from tenants.models import Tenant

    keys: list[str] = list(settings.ATRIUM_PROVIDER_ORDER)
    for tenant in Tenant.objects.filter(is_active=True).exclude(schema_name="public").only("provider_order"):
        keys += provider_order_for(tenant)
    seen: set[str] = set()
    pairs: list[tuple[ProviderTarget, str]] = []
    for key in keys:
        if key not in seen:
            seen.add(key)
            pairs.append((parse_target(key), "environment"))
    return pairs


def _cheapest_model_id(target: ProviderTarget) -> str | None:
    for entry in sorted(catalog_entries(), key=lambda e: (e.input_price_cents_per_mtok, e.model_id)):
        model_id = entry.provider_model_id(target.provider, target.region)
        if model_id:
            return model_id
    return None


def provider_health_check(target: ProviderTarget, source: str = "environment") -> HealthResult:
    model_id = _cheapest_model_id(target)
    if model_id is None:
        return HealthResult(target.key, source, "misconfigured", None, 0, "", "no catalog model is served here")
    t0 = time.monotonic()
    try:
        client = provider_client(target)
        provider_create(client, model_id=model_id, timeout=settings.ATRIUM_HEALTH_CHECK_TIMEOUT_S,
                        params={"max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]})
    except Exception as exc:
        latency = int((time.monotonic() - t0) * 1000)
        failure = classify(exc)
        if failure.kind == "misconfigured":
            return HealthResult(target.key, source, "misconfigured", failure.status, latency, model_id, failure.reason)
        if failure.kind == "transient":
            breaker.breaker_record_failure(target.breaker_name, reason=f"health check: {failure.reason}",
                                           force_open=True)
            return HealthResult(target.key, source, "down", failure.status, latency, model_id, failure.reason)
        # A 400 to a one-token ping means the provider answered: it is up, the catalog id may be wrong.
        breaker.breaker_record_success(target.breaker_name)
        return HealthResult(target.key, source, "up", failure.status, latency, model_id, failure.reason)
    latency = int((time.monotonic() - t0) * 1000)
    breaker.breaker_record_success(target.breaker_name)
    return HealthResult(target.key, source, "up", 200, latency, model_id, "")


def _pooled_check(pair: tuple[ProviderTarget, str]) -> HealthResult:
    """One check on a thread of provider_health_check_all's pool, which ends with the run. What the check read from
    the database (the model catalog, when its snapshot is older than ATRIUM_CATALOG_CACHE_S) opened a connection
    of this thread's own: closed here, or it would stay open until the cyclic collector's next full collection (a
    Celery worker closes only its task's thread's connections), one more each run (tests/inference/
    test_health_worker.py: 3, 4, 5, 6 connections after four runs)."""
    try:
        return provider_health_check(*pair)
    finally:
        connections.close_all()


def provider_health_check_all(*, store: bool = True) -> list[HealthResult]:
    """Check every target in parallel, store the results and prune old history."""
    pairs = health_targets()
    if not pairs:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(pairs)), thread_name_prefix="health") as pool:
        results = list(pool.map(_pooled_check, pairs))
    if store:
        now = timezone.now()
        ProviderHealthCheck.objects.bulk_create([
            ProviderHealthCheck(target=r.target, credentials_source=r.credentials_source, status=r.status,
                                http_status=r.http_status, latency_ms=r.latency_ms, model_id=r.model_id,
                                detail=r.detail[:300], checked_at=now)
            for r in results
        ])
        ProviderHealthCheck.objects.filter(
            checked_at__lt=now - timedelta(days=settings.ATRIUM_HEALTH_HISTORY_DAYS)).delete()
    for r in results:
        if r.status != "up":
            logger.warning("provider health check failed",
                           extra={"target": r.target, "status": r.status, "detail": r.detail})
    return results


def provider_status() -> list[dict[str, Any]]:
    """Per target: latest check, breaker state and recent latencies, for the admin status page."""
    rows: list[dict[str, Any]] = []
    targets = sorted({c.target for c in ProviderHealthCheck.objects.only("target")} |
                     set(settings.ATRIUM_PROVIDER_ORDER))
    for target in targets:
        history = list(ProviderHealthCheck.objects.filter(target=target).order_by("-checked_at")[:30])
        latest = history[0] if history else None
        ups = [h.latency_ms for h in history if h.status == "up"]
        rows.append({
            "target": target,
            "latest": latest,
            "breaker": breaker.breaker_state(target),
            "scopes": breaker.breaker_scopes(target),
            "history": list(reversed(history)),
            "uptime_pct": round(100 * len(ups) / len(history)) if history else None,
            "median_latency_ms": sorted(ups)[len(ups) // 2] if ups else None,
        })
    return rows

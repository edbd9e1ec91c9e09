"""Quota and budget settlements lost with their process (SIGKILL, OOM): a call's records commit first and its
settlement runs afterwards from memory (inference.records), so a process killed between the two leaves the call's
usage in PostgreSQL and never brings it to the Redis counters (its reservation is reaped after its TTL: the tokens
go back, the usage never arrives; a budget keeps the call's largest possible cost instead of its real one).

At every web process's start (recorder_start) the recently recorded calls of every tenant with token quotas or
active budgets are settled again through the settled sets (access.counter_recovery): a call settled already is
never counted twice, a lost settlement is applied once. "Recently": the calls whose model_call audit entry is
newer than ATRIUM_SETTLE_RECOVERY_MINUTES and older than ATRIUM_SETTLE_RECOVERY_GRACE_S (a younger call may still
be settled by the live process that recorded it); a second pass after that grace covers the calls of the moments
before the start (the kill that caused it). One query per tenant and pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django_tenants.utils import tenant_context

from access.counter_recovery import budget_recover, quota_recover

logger = logging.getLogger(__name__)

# The tenant's recorded calls of the window that charged tokens or cost money (the audit entries' (event_type,
# -timestamp) index, then the usage ledger's unique request id).
_RECENT_CALLS = (
    "SELECT u.request_id, u.user_id, u.charged_tokens, u.cost_micros, u.api_key, u.day "
    "FROM audit_auditentry a JOIN inference_usagerecord u ON u.request_id = a.request_id "
    "WHERE a.event_type = 'model_call' AND a.timestamp >= %s AND a.timestamp < %s "
    "AND (u.charged_tokens > 0 OR u.cost_micros > 0)")

Call = tuple[str, int | None, int, int, str, date]  # request id, user id, tokens charged, cost, API key prefix, day


def _recent_calls(since: datetime, until: datetime) -> list[Call]:
    with connection.cursor() as cursor:
        cursor.execute(_RECENT_CALLS, [since, until])
        return [(str(r), u, int(t or 0), int(c or 0), str(k or ""), d) for r, u, t, c, k, d in cursor.fetchall()]


def _has_quota(tenant: Any) -> bool:
    return tenant.tokens_per_day is not None or tenant.effective_user_tokens_per_day is not None


def settle_recover(tenants: Iterable[Any] | None = None, *, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """Settle the recent recorded calls whose settlement was lost, for each tenant (all but public by default).
    Returns, per tenant where something was lost, (calls whose tokens were added, calls whose budget settlement
    was missing: the tenant's budget counters were rebuilt). Safe to run any number of times."""
    minutes = float(getattr(settings, "ATRIUM_SETTLE_RECOVERY_MINUTES", 15))
    if minutes <= 0:
        return {}
    moment = now or datetime.now(UTC)
    since = moment - timedelta(minutes=minutes)
    until = moment - timedelta(seconds=float(getattr(settings, "ATRIUM_SETTLE_RECOVERY_GRACE_S", 30)))
    if tenants is None:
        from tenants.models import Tenant

        tenants = Tenant.objects.exclude(schema_name="public")
    out: dict[str, tuple[int, int]] = {}
    for tenant in tenants:
        with tenant_context(tenant):
            from access.models import Budget

            quota = _has_quota(tenant)
            budgets = Budget.objects.filter(active=True).exists()
            if not quota and not budgets:
                continue
            calls = _recent_calls(since, until)
            if not calls:
                continue
            tokens = quota_recover(tenant=tenant, calls=((r, u, t, d) for r, u, t, _c, _k, d in calls)) if quota \
                else 0
            money = budget_recover(schema=tenant.schema_name, calls=((r, u, k, c, d) for r, u, _t, c, k, d in calls)
                                   ) if budgets else 0
        if tokens > 0 or money > 0:
            out[tenant.schema_name] = (max(tokens, 0), max(money, 0))
            logger.warning("settle_recovered: %d calls of %s had lost their quota settlement, %d their budget "
                           "settlement (their process died after recording them)", max(tokens, 0),
                           tenant.schema_name, max(money, 0))
    return out


def _run_passes() -> None:
    """The recovery's two passes in a thread of their own (a worker's boot does not wait for them)."""
    try:
        for attempt in range(2):
            if attempt:
                time.sleep(float(getattr(settings, "ATRIUM_SETTLE_RECOVERY_GRACE_S", 30)))
            try:
                settle_recover()
            except Exception:
                logger.warning("settle_recovery: a pass failed (the next process start retries it)", exc_info=True)
    finally:
        connection.close()


def settle_recovery_start() -> threading.Thread | None:
    """Start the recovery at a web process's boot (inference.records.recorder_start)."""
    if float(getattr(settings, "ATRIUM_SETTLE_RECOVERY_MINUTES", 15)) <= 0:
        return None
    thread = threading.Thread(target=_run_passes, name="atrium-settle-recovery", daemon=True)
    thread.start()
    return thread

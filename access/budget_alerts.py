"""Budget alerts: at 80% and 100% of a budget (100% also when the budget refuses a call), once per threshold and
period (a Redis flag, then a unique row: BudgetAlert), an e-mail through Django's mail backend to the tenant's
administrators and the budget's user, an audit entry, and the notice in the tenant admin (Budget alerts)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

from access.budgets import TTL_MONTHLY_S, BudgetLimit, period_bounds, tenant_prefix, usd
from config.redis import redis_client

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _dispatch(job: Callable[[], None]) -> None:
    """Alerts never hold a response or the record writer: with background recording they are sent by one
    background thread of the process; otherwise (tests, synchronous recording) here and now."""
    from django.conf import settings

    if not getattr(settings, "ATRIUM_RECORD_IN_BACKGROUND", True):
        job()
        return
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atrium-budget-alerts")
    _executor.submit(job)


def _flag(schema: str, budget_id: int, period_start: str, threshold: int) -> bool:
    """True the first time this threshold of this budget's period is reached (cheap dedupe before the database)."""
    key = f"{tenant_prefix(schema)}alerted:{budget_id}:{period_start}:{threshold}"
    try:
        return bool(redis_client().set(key, "1", nx=True, ex=TTL_MONTHLY_S))
    except Exception:
        logger.warning("budget alert flag unavailable; the database decides", exc_info=True)
        return True


def alert_due(schema: str, budget_id: int, period_start: str, threshold: int, spent: int, limit: int) -> None:
    if _flag(schema, budget_id, period_start, threshold):
        _dispatch(lambda: _alert_run(schema, budget_id, period_start, threshold, spent, limit))


def alert_refused(schema: str, budget: BudgetLimit, spent: int) -> None:
    """A budget that refuses a call is used up for that call: its 100% alert, if not sent yet."""
    alert_due(schema, budget.budget_id, budget.period_start, 100, spent, budget.limit)


def _alert_run(schema: str, budget_id: int, period_start: str, threshold: int, spent: int, limit: int) -> None:
    from django.db import connection
    from django_tenants.utils import schema_context

    try:
        if getattr(connection, "schema_name", None) == schema:
            budget_alert_send(budget_id=budget_id, period_start=date.fromisoformat(period_start),
                              threshold=threshold, spent=spent, limit=limit)
        else:
            with schema_context(schema):
                budget_alert_send(budget_id=budget_id, period_start=date.fromisoformat(period_start),
                                  threshold=threshold, spent=spent, limit=limit)
    except Exception:
        logger.exception("budget alert of budget %s (%s%%) could not be sent", budget_id, threshold)


def alert_recipients(budget: Any) -> list[str]:
    """The tenant's administrators (access.admin) and the budget's own user (or the API key's owner)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    admin = Q(groups__permissions__codename="admin", groups__permissions__content_type__app_label="access")
    people = get_user_model().objects.filter(admin, is_active=True).exclude(email="")
    emails = set(people.values_list("email", flat=True))
    owner = budget.user if budget.user_id else (budget.api_key.user if budget.api_key_id else None)
    if owner is not None and owner.email and owner.is_active:
        emails.add(owner.email)
    return sorted(emails)


def budget_alert_send(*, budget_id: int, period_start: date, threshold: int, spent: int, limit: int) -> bool:
    """Record the alert (once per budget, period and threshold: a unique row), then e-mail it (only once the row
    is written, so a refused duplicate sends nothing). Returns True if this call sent it."""
    from django.conf import settings
    from django.core.mail import send_mail
    from django.db import IntegrityError, transaction

    from access.audit_hooks import access_audit
    from access.models import Budget, BudgetAlert

    budget = Budget.objects.select_related("user", "api_key__user").filter(pk=budget_id).first()
    if budget is None:
        return False
    recipients = alert_recipients(budget)
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(budget=budget, period_start=period_start, threshold=threshold,
                                               spent_micros=spent, limit_micros=limit, recipients=recipients)
            access_audit("budget_alert", metadata={"budget": budget.pk, "threshold": threshold,
                                                   "period_start": period_start.isoformat(),
                                                   "spent_micros": spent, "limit_micros": limit})
    except IntegrityError:
        return False  # already sent for this period (another process got there first)
    _start, resets = period_bounds(budget.period, datetime.combine(period_start, datetime.min.time(), tzinfo=UTC))
    what = "is used up: calls that could cost more than what is left are refused" if threshold >= 100 else \
        f"has reached {threshold}%"
    subject = f"Atrium budget alert: {budget.label} {what.split(':')[0]}"
    body = (f"{budget.label[0].upper()}{budget.label[1:]} ({budget.get_period_display()}) {what}.\n\n"
            f"Spent or held by calls in progress: {usd(spent)} of {usd(limit)}.\n"
            f"The period started on {period_start:%Y-%m-%d} and resets at {resets:%Y-%m-%d %H:%M} UTC.\n\n"
            f"Budgets and alerts are in the organisation's admin, under Access > Budgets.\n")
    if recipients:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    logger.info("budget_alert: budget %s reached %s%% (%s alert %s)", budget.pk, threshold,
                "e-mailed" if recipients else "no recipient for", alert.pk)
    return True

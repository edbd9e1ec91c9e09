"""Celery tasks of the inference module."""

from __future__ import annotations

from celery import shared_task
from django.db import connection
from django_tenants.utils import tenant_context

from config.tasks_base import TRANSIENT_RETRY, RunsWhileSuspended
from inference.health import provider_health_check_all as _check_all


@shared_task(name="inference.tasks.provider_health_check_all", ignore_result=True)
def provider_health_check_all() -> int:
    """Beat runs this every ATRIUM_HEALTH_CHECK_INTERVAL_S in the public schema; returns the targets checked."""
    return len(_check_all())


@shared_task(name="inference.tasks.batch_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             **TRANSIENT_RETRY)
def batch_run(batch_id: str) -> str:
    """Run a message batch's remaining requests (in the tenant's schema it was sent from)."""
    from inference.batches import batch_run as run

    return run(batch_id)


@shared_task(name="inference.tasks.batch_recover", ignore_result=True)
def batch_recover() -> int:
    """Queue again the batches whose worker died (lease expired). Sent in the public schema: walks every tenant."""
    from inference.batches import batch_recover as recover
    from tenants.models import Tenant

    if connection.schema_name != "public":  # type: ignore[attr-defined]
        return recover()
    total = 0
    for tenant in Tenant.objects.exclude(schema_name="public").filter(is_active=True):
        with tenant_context(tenant):
            total += recover()
    return total


@shared_task(base=RunsWhileSuspended, name="inference.tasks.batch_results_expire", ignore_result=True)
def batch_results_expire() -> int:
    """Beat runs this in every tenant's schema (hourly; a suspended tenant's too: it deletes personal data):
    ended batches past ATRIUM_BATCH_RESULTS_RETENTION_DAYS lose their requests and results."""
    from inference.batches import batch_results_expire as expire

    return expire()

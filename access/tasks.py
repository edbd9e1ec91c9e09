"""Celery tasks of the access module."""

from __future__ import annotations

import logging

from celery import shared_task

from access.quotas import quota_reservations_reap

logger = logging.getLogger(__name__)


@shared_task(name="access.tasks.quota_reservations_reap_all", ignore_result=True)
def quota_reservations_reap_all() -> int:
    """Beat sends this in the public schema (ATRIUM_QUOTA_REAP_INTERVAL_S): every tenant's reservations past their
    TTL give their tokens back, suspended and idle tenants' too (their counters are read by the usage pages and
    by the next admission). Returns how many were released."""
    from tenants.models import Tenant

    total = 0
    for schema in Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True):
        released = quota_reservations_reap(schema=schema)
        if released:
            logger.info("stale quota reservations released", extra={"tenant": schema, "released": released})
        total += released
    return total

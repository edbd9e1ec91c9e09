"""Celery tasks of the inference module."""

from __future__ import annotations

from celery import shared_task

from inference.health import provider_health_check_all as _check_all


@shared_task(name="inference.tasks.provider_health_check_all", ignore_result=True)
def provider_health_check_all() -> int:
    """Beat runs this every ATRIUM_HEALTH_CHECK_INTERVAL_S in the public schema; returns the targets checked."""
    return len(_check_all())

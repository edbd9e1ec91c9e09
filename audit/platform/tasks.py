"""Celery tasks of the platform audit app."""

from __future__ import annotations

from celery import shared_task

from audit.platform import checkpoints


@shared_task(ignore_result=True)
def checkpoint_all() -> int:
    """Beat, every ATRIUM_AUDIT_CHECKPOINT_INTERVAL_S, in the public schema: checkpoint every chain's head."""
    return checkpoints.checkpoint_all()

"""Celery tasks of the platform audit app."""

from __future__ import annotations

from celery import shared_task

from audit.platform import checkpoints


@shared_task(ignore_result=True)
def checkpoint_all() -> int:
    """Beat, every ATRIUM_AUDIT_CHECKPOINT_INTERVAL_S, in the public schema: checkpoint every chain's head."""
    return checkpoints.checkpoint_all()


@shared_task(ignore_result=True)
def siem_stream_all() -> int:
    """Beat, every ATRIUM_SIEM_INTERVAL_S, in the public schema: send every SIEM destination what it has not
    acknowledged (audit.siem.streamer). Overlapping runs share the work: each skips a destination another holds."""
    from audit.siem.streamer import siem_stream_all as stream

    return stream()

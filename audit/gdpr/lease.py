"""What every GDPR job step shares: the job's lease and progress, the subject, the pause between batches."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from audit.models import GdprJob
from config.http import HttpError


class JobRefused(HttpError):
    """The request cannot be accepted (unknown user, not allowed); `message` says why."""

    status = 400


def job_subject(job: GdprJob) -> int:
    if job.subject_id is None:
        raise JobRefused("the job has no subject (already deleted?)")
    return int(job.subject_id)


def batch_pause() -> None:
    pause = settings.ATRIUM_GDPR_BATCH_PAUSE_MS
    if pause:
        time.sleep(pause / 1000)


def job_renew(job: GdprJob, **fields: Any) -> None:
    """Extend the lease and save progress fields, in the caller's transaction."""
    fields["lease_until"] = timezone.now() + timedelta(seconds=settings.ATRIUM_GDPR_LEASE_S)
    fields["updated_at"] = timezone.now()
    GdprJob.objects.filter(pk=job.pk).update(**fields)
    for name, value in fields.items():
        setattr(job, name, value)

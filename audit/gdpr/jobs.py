"""GDPR job requests and runs: a job is a row (audit.GdprJob) driven by Celery tasks (audit.tasks). Each run first
takes a lease on its row, so two workers never run one job at once; a job whose worker died (lease expired) is
resumed by `gdpr_recover`."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import chain, queries
from audit.gdpr.deletion import deletion_run
from audit.gdpr.export import export_run
from audit.gdpr.lease import JobRefused
from audit.models import GdprJob
from audit.services import audit_record, erasure_start
from config.personal_data import erasure_start_hooks
from config.tasks_base import TRANSIENT_ERRORS, connections_reset

logger = logging.getLogger(__name__)


def _queue() -> str:
    return str(settings.ATRIUM_GDPR_QUEUE)


def gdpr_request(*, kind: str, subject: Any, requested_by: Any, request: Any = None) -> GdprJob:
    """Create (or return the already active) job and queue it after commit. Permission checks are the caller's.

    A deletion starts here: the subject is marked as being erased (their calls still in flight are recorded
    redacted, nothing new links to them) and every app's erasure start hook runs (their keys and sessions are
    refused from the commit on), in this transaction."""
    if kind not in GdprJob.Kind.values:
        raise JobRefused(f"unknown job kind {kind!r}")
    if kind == GdprJob.Kind.DELETION and subject.pk == getattr(requested_by, "pk", None):
        raise JobRefused("Compliance staff cannot delete their own account; ask a colleague.")
    key = chain.tenant_key()
    with transaction.atomic():
        active = GdprJob.objects.select_for_update().filter(
            kind=kind, subject_id=subject.pk, status__in=[GdprJob.Status.QUEUED, GdprJob.Status.RUNNING]).first()
        if active is not None:
            return active
        job = GdprJob.objects.create(kind=kind, subject_id=subject.pk, subject_label=subject.email or subject.username,
                                     subject_ref=chain.pseudonym(key, subject.pk), requested_by=requested_by)
        audit_record(event_type=f"{kind}_requested", user=requested_by, request=request,
                     metadata={"job": str(job.id), "subject": job.subject_ref})
        if kind == GdprJob.Kind.DELETION:
            erasure_start(subject.pk)
            for hook in erasure_start_hooks():
                hook(subject.pk)
        transaction.on_commit(lambda: gdpr_enqueue(job))
    return job


def gdpr_enqueue(job: GdprJob) -> None:
    from audit.tasks import gdpr_run

    gdpr_run.apply_async(args=[str(job.id)], queue=_queue())


def gdpr_retry(job: GdprJob, *, by: Any, request: Any = None) -> GdprJob:
    """Queue a failed job again; it resumes where it stopped."""
    with transaction.atomic():
        updated = GdprJob.objects.filter(pk=job.pk, status=GdprJob.Status.FAILED).update(
            status=GdprJob.Status.QUEUED, error="", lease_until=None)
        if updated:
            audit_record(event_type=f"{job.kind}_retried", user=by, request=request, metadata={"job": str(job.id)})
            transaction.on_commit(lambda: gdpr_enqueue(job))
    job.refresh_from_db()
    return job


def job_claim(job_id: str) -> GdprJob | None:
    """Take the job's lease. None when it is finished or another worker holds a live lease."""
    claimed = queries.gdpr_job_lease(job_id, settings.ATRIUM_GDPR_LEASE_S)
    return GdprJob.objects.get(pk=job_id) if claimed else None


def gdpr_run(job_id: str) -> str:
    """Run the job where it stopped. "busy" when another run holds its lease, "skipped" when it has finished.

    An error of a database or Redis that went away (config.tasks_base.TRANSIENT_ERRORS: a restart, a terminated
    connection) does not fail the job: what its batches committed stands, its lease is given back, and the error is
    raised for the task to run it again with backoff (audit.tasks.gdpr_run). Any other error marks it failed (an
    officer retries it from the console)."""
    job = job_claim(job_id)
    if job is None:
        active = GdprJob.objects.filter(pk=job_id, status__in=[GdprJob.Status.QUEUED, GdprJob.Status.RUNNING])
        return "busy" if active.exists() else "skipped"
    try:
        if job.kind == GdprJob.Kind.EXPORT:
            export_run(job)
        else:
            deletion_run(job)
    except TRANSIENT_ERRORS:
        logger.warning("GDPR %s job %s interrupted by the database or Redis; it will be run again", job.kind, job.id)
        _lease_release(job)
        raise
    except Exception as exc:
        logger.exception("GDPR %s job %s failed", job.kind, job.id)
        with transaction.atomic():
            GdprJob.objects.filter(pk=job.pk).update(status=GdprJob.Status.FAILED, lease_until=None,
                                                     error=f"{type(exc).__name__}: {exc}"[:2000])
            audit_record(event_type=f"{job.kind}_failed", status="error", metadata={"job": str(job.id)},
                         error=type(exc).__name__)
        return "failed"
    return "done"


def _lease_release(job: GdprJob) -> None:
    """Give the lease of an interrupted run back (on a new connection), so its retry takes the job at once. If the
    database is still away, the lease runs out after ATRIUM_GDPR_LEASE_S instead."""
    connections_reset()
    with contextlib.suppress(*TRANSIENT_ERRORS):
        GdprJob.objects.filter(pk=job.pk, status=GdprJob.Status.RUNNING).update(lease_until=None)


def gdpr_recover() -> int:
    """Queue again every job whose worker went away (lease expired) or whose message was lost."""
    stale = timezone.now()
    jobs = GdprJob.objects.filter(status__in=[GdprJob.Status.QUEUED, GdprJob.Status.RUNNING]).exclude(
        lease_until__gte=stale)
    queued_lost = timezone.now() - timedelta(seconds=settings.ATRIUM_GDPR_LEASE_S)
    count = 0
    for job in jobs:
        if job.status == GdprJob.Status.QUEUED and job.created_at > queued_lost and job.lease_until is None:
            continue  # freshly queued: its message is probably on the way
        gdpr_enqueue(job)
        count += 1
    return count

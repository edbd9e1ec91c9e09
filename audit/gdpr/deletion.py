"""GDPR deletion: every app's erasure steps (config/personal_data.py), in order, then a receipt.

Each step works in batches; each batch commits together with its counts and, for the last batch, the step's
completion. A run killed at any point resumes at the first unfinished step and ends in the same state, with the
same counts, as an uninterrupted run. The subject was marked as being erased when the deletion was requested
(audit.gdpr.jobs.gdpr_request), so calls still in flight are recorded redacted and the steps that run after
them (usage, audit) leave nothing linked to the subject.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from audit import chain
from audit.gdpr.lease import JobRefused, batch_pause, job_renew
from audit.models import DeletionReceipt, GdprJob
from audit.services import audit_record, audit_redact_batch
from config.personal_data import ErasureStep, erasure_steps


def deletion_steps() -> tuple[str, ...]:
    return tuple(step.name for step in erasure_steps())


def _step_done(job: GdprJob, step: str, order: tuple[str, ...]) -> bool:
    current = job.step.split(":")[0] if job.step else ""
    if current not in order:
        return False
    position = order.index(current)
    return order.index(step) < position or (order.index(step) == position and job.step.endswith(":done"))


def _step_run(job: GdprJob, step: ErasureStep, subject_id: int) -> None:
    """Run the step in batches until it erases fewer than a batch; each batch commits with its counts."""
    batch = settings.ATRIUM_GDPR_BATCH
    while True:
        with transaction.atomic():
            found = step.erase(subject_id, batch)
            counts = dict(job.counts)
            for name, value in found.items():
                counts[name] = int(counts.get(name, 0)) + int(value)
            counts.setdefault(step.name, 0)
            done = int(found.get(step.name, 0)) < batch
            job_renew(job, counts=counts, step=step.name if not done else f"{step.name}:done")
        if done:
            return
        batch_pause()


def deletion_run(job: GdprJob) -> None:
    subject_id = job.subject_id
    if subject_id is None:
        raise JobRefused("the job has no subject")
    steps = erasure_steps()
    order = tuple(step.name for step in steps)
    for index, step in enumerate(steps):
        if _step_done(job, step.name, order):
            continue
        job_renew(job, progress=int(100 * index / (len(steps) + 1)))
        _step_run(job, step, int(subject_id))
    _deletion_finish(job, int(subject_id))


def _deletion_finish(job: GdprJob, subject_id: int) -> None:
    # The final sweep: anything of the subject's that reached the trail after the audit step is redacted too
    # (nothing should: their records have been written redacted since the deletion was requested).
    while audit_redact_batch(subject_id, settings.ATRIUM_GDPR_BATCH):
        pass
    if job.notified_at is None and "@" in job.subject_label:
        send_mail(
            subject="Your personal data has been deleted",
            message=("Your data in this organisation's Atrium (conversations, preferences, API keys, consents) has "
                     f"been deleted, and your account closed. Reference: {job.id}."),
            from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=[job.subject_label], fail_silently=False)
        job_renew(job, notified_at=timezone.now())
    requester_ref = ""
    if job.requested_by_id is not None:
        requester_ref = chain.pseudonym(chain.tenant_key(), job.requested_by_id)
    from tenants.models import Tenant

    action = Tenant.objects.get(schema_name=connection.schema_name).gdpr_account_action  # type: ignore[attr-defined]
    with transaction.atomic():
        _receipt, created = DeletionReceipt.objects.get_or_create(job=job, defaults={
            "subject_ref": job.subject_ref, "requested_by_ref": requester_ref, "requested_at": job.created_at,
            "completed_at": timezone.now(), "counts": job.counts, "account_action": action})
        job_renew(job, status=GdprJob.Status.DONE, progress=100, step="done", subject_id=None, subject_label="",
                  finished_at=timezone.now(), lease_until=None, error="")
        if created:
            audit_record(event_type="deletion_completed", metadata={"job": str(job.id), "subject": job.subject_ref,
                                                                    "counts": job.counts, "account": action})

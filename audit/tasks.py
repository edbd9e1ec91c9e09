"""Celery tasks of the audit app. tenant-schemas-celery runs each in the schema it was sent from; beat entries
without `tenant_schemas` run once per tenant (settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import connection
from django_tenants.utils import tenant_context

from audit import gdpr
from audit.models import GdprJob
from config.tasks_base import TRANSIENT_RETRY, AtriumTask, RunsWhileSuspended, retry_countdown


class GdprRunTask(AtriumTask):
    """A GDPR job: a deletion runs while the tenant is suspended (the law still applies), an export waits."""

    abstract = True

    def may_run_suspended(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        job_id = args[0] if args else kwargs.get("job_id")
        return job_id is not None and GdprJob.objects.filter(pk=str(job_id), kind="deletion").exists()


@shared_task(base=GdprRunTask, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             **TRANSIENT_RETRY)
def gdpr_run(self: Any, job_id: str) -> str:
    """Run the job. A database or Redis error that is not the job's fault (TRANSIENT_RETRY) sends the task again with
    backoff; the job resumes where its committed batches left it."""
    outcome = gdpr.gdpr_run(job_id)
    if outcome == "busy" and self.request.retries:
        # A retry finding the job's lease still held: most likely this job's own interrupted run, whose lease
        # could not be given back while the database was away. Again later, until that lease runs out.
        raise self.retry(countdown=retry_countdown(self), max_retries=TRANSIENT_RETRY["max_retries"])
    return outcome


@shared_task(base=RunsWhileSuspended, ignore_result=True)
def gdpr_recover() -> int:
    """Resume jobs whose worker died (their lease expired). Sent in the public schema: walks every tenant."""
    from tenants.models import Tenant

    if connection.schema_name != "public":  # type: ignore[attr-defined]
        return gdpr.gdpr_recover()
    total = 0
    for tenant in Tenant.objects.exclude(schema_name="public"):
        with tenant_context(tenant):
            total += gdpr.gdpr_recover()
    return total


@shared_task(base=RunsWhileSuspended, ignore_result=True, **TRANSIENT_RETRY)
def retention_run() -> int:
    """Beat, daily, in every tenant's schema. Retried with backoff when the database or Redis is away: the next
    run is a day later, and a run started again deletes only what is still past the retention."""
    from tenants.models import Tenant

    tenant = Tenant.objects.get(schema_name=connection.schema_name)  # type: ignore[attr-defined]
    return gdpr.retention_run(tenant)


@shared_task(base=RunsWhileSuspended, ignore_result=True)
def export_expire() -> int:
    return gdpr.export_expire()

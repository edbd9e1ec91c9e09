"""The base class of every Celery task: tenant-schemas-celery's TenantTask, paused for a suspended tenant.

A deactivated tenant's background work stops, except what the law or the tenant's own data protection needs:
GDPR deletions and retention (and the recovery of interrupted GDPR jobs, which only resumes deletions' leases).
Periodic runs sent by beat are skipped (the next one happens on schedule after reactivation); work enqueued for
the tenant (exports, batches) is retried later, so it resumes by itself once the tenant is active again.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from tenant_schemas_celery.task import TenantTask

logger = logging.getLogger(__name__)

# Task names that run for a suspended tenant. gdpr_run is decided per job (deletions run, exports wait).
RUNS_WHILE_SUSPENDED = frozenset({"audit.tasks.retention_run", "audit.tasks.gdpr_recover",
                                  "audit.tasks.export_expire"})
GDPR_RUN = "audit.tasks.gdpr_run"


def _tenant_suspended() -> bool:
    schema = getattr(connection, "schema_name", "public")
    if schema == "public":
        return False
    from tenants.models import Tenant

    active = Tenant.objects.filter(schema_name=schema).values_list("is_active", flat=True).first()
    return active is False


def _may_run_suspended(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if name in RUNS_WHILE_SUSPENDED:
        return True
    if name == GDPR_RUN:
        from audit.models import GdprJob

        job_id = args[0] if args else kwargs.get("job_id")
        return job_id is not None and GdprJob.objects.filter(pk=str(job_id), kind="deletion").exists()
    return False


class AtriumTask(TenantTask):  # type: ignore[misc]
    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The schema is already this task's (tenant-schemas-celery switches it in task_prerun).
        if _tenant_suspended() and not _may_run_suspended(str(self.name), args, kwargs):
            request = self.request
            headers = dict(getattr(request, "headers", None) or {})
            periodic = "periodic_task_name" in headers or "_all_tenants_only" in headers \
                or getattr(request, "periodic_task_name", None)
            schema = getattr(connection, "schema_name", "")
            if periodic or request.called_directly or request.is_eager:
                logger.info("task skipped: tenant suspended", extra={"task": self.name, "tenant": schema})
                return None
            logger.info("task paused: tenant suspended", extra={"task": self.name, "tenant": schema})
            raise self.retry(countdown=float(settings.ATRIUM_SUSPENDED_TASK_RETRY_S), max_retries=None)
        return super().__call__(*args, **kwargs)

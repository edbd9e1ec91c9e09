"""The base class of every Celery task: tenant-schemas-celery's TenantTask, paused for a suspended tenant.

A deactivated tenant's background work stops, except what the law or the tenant's own data protection needs:
GDPR deletions and retention (and the recovery of interrupted GDPR jobs, which only resumes deletions' leases):
the tasks that say so (`base=RunsWhileSuspended`, or a `may_run_suspended` of their own, audit/tasks.py).
Periodic runs sent by beat are skipped (the next one happens on schedule after reactivation); work enqueued for
the tenant (exports, batches) is retried later, so it resumes by itself once the tenant is active again.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django_tenants.utils import get_tenant_model
from tenant_schemas_celery.task import TenantTask

logger = logging.getLogger(__name__)


def _tenant_suspended() -> bool:
    schema = getattr(connection, "schema_name", "public")
    if schema == "public":
        return False
    # Read fresh (not the tenant object tenant-schemas-celery cached), through django-tenants: config imports no app.
    active = get_tenant_model().objects.filter(schema_name=schema).values_list("is_active", flat=True).first()
    return active is False


class AtriumTask(TenantTask):  # type: ignore[misc]
    abstract = True
    # True for a task that runs for a suspended tenant (the owning app decides, with `base=RunsWhileSuspended`
    # or a `may_run_suspended` of its own; config knows no app's tasks).
    runs_while_suspended = False

    def may_run_suspended(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether this call runs while its tenant is suspended; a task class may decide per call."""
        return bool(self.runs_while_suspended)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The schema is already this task's (tenant-schemas-celery switches it in task_prerun).
        if _tenant_suspended() and not self.may_run_suspended(args, kwargs):
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


class RunsWhileSuspended(AtriumTask):
    """Base of the tasks the law or the tenant's own data protection needs even while it is suspended."""

    abstract = True
    runs_while_suspended = True

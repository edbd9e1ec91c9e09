"""Celery beat's scheduler (settings.CELERY_BEAT_SCHEDULER). Imported by beat only, once Django is set up."""

from __future__ import annotations

from tenant_schemas_celery.db_scheduler import TenantAwareDatabaseScheduler


class PlatformBeatScheduler(TenantAwareDatabaseScheduler):
    """tenant-schemas-celery's database scheduler, reading periodic tasks from the public schema only.

    Atrium's schedule is the platform's (settings.CELERY_BEAT_SCHEDULE, stored by django-celery-beat in the public
    schema); entries without `tenant_schemas` fan out to every tenant when due. The stock scheduler also scans each
    tenant schema for a table of its own; django-celery-beat is a shared app, so a tenant's search path falls
    through to the public table, every task is seen twice and beat refuses to start ("duplicate periodic task
    name").
    """

    def get_tenant_schema_names(self, exclude_schemas: list[str]) -> list[str]:
        return []

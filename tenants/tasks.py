"""Operational tasks of the tenants app."""

from celery import shared_task
from django.db import connection


@shared_task(name="tenants.tasks.schema_probe")
def schema_probe() -> str:
    """Returns the schema the worker ran the task in: proves tenant context reaches workers (/readyz-like)."""
    return str(getattr(connection, "schema_name", ""))

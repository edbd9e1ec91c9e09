"""The base class of every Celery task: tenant-schemas-celery's TenantTask, paused for a suspended tenant.

A deactivated tenant's background work stops, except what the law or the tenant's own data protection needs:
GDPR deletions and retention (and the recovery of interrupted GDPR jobs, which only resumes deletions' leases):
the tasks that say so (`base=RunsWhileSuspended`, or a `may_run_suspended` of their own, audit/tasks.py).
Periodic runs sent by beat are skipped (the next one happens on schedule after reactivation); work enqueued for
the tenant (exports, batches) is retried later, so it resumes by itself once the tenant is active again.

A task runs in the schema it was sent from, or not at all. tenant-schemas-celery switches the schema in a
`task_prerun` signal handler, and Celery logs and swallows what a signal handler raises: a switch that failed (the
database refusing connections, "too many clients"; a tenant deleted while its tasks were queued) let the task run
in whatever schema the connection held, public. The task itself checks its schema before its body and, if the
handler did not enter it, enters it here, where a failure fails the task (TaskSchemaUnavailable), unless the task
is retried on transient errors (TRANSIENT_RETRY: resumable jobs) and the failure came from the database or Redis
being away: it is then sent again with backoff.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections
from django_tenants.utils import get_public_schema_name, get_tenant_model
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenant_schemas_celery.app import get_schema_name_from_task
from tenant_schemas_celery.task import TenantTask

logger = logging.getLogger(__name__)


def _tenant_suspended() -> bool:
    schema = getattr(connection, "schema_name", "public")
    if schema == "public":
        return False
    # Read fresh (not the tenant object tenant-schemas-celery cached), through django-tenants: config imports no app.
    active = get_tenant_model().objects.filter(schema_name=schema).values_list("is_active", flat=True).first()
    return active is False


# What a database or Redis that went away for a while raises: a PostgreSQL restart or failover, a terminated backend
# (pg_terminate_backend, an idle-session timeout, a proxy cutting the connection), a network cut, a Redis restart. A
# resumable job (GDPR exports and deletions, message batches) meeting one of these keeps what it committed and is
# run again with backoff (TRANSIENT_RETRY) instead of failing.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, RedisConnectionError,
                                                     RedisTimeoutError)
# Celery's autoretry (celery.app.autoretry): sent again after a random 0..min(300, 2 * 2^n) s (full jitter: the
# workers a restart interrupted do not come back at once), at most 8 times (about ten minutes at least); after that
# the task fails and the job's own recovery (its lease expired: gdpr_recover, batch_recover, every minute) queues it
# again.
TRANSIENT_RETRY: dict[str, Any] = {"autoretry_for": TRANSIENT_ERRORS, "retry_backoff": 2, "retry_backoff_max": 300,
                                   "retry_jitter": True, "max_retries": 8}


def retry_countdown(task: Any) -> float:
    """The countdown of TRANSIENT_RETRY's next retry of `task`, for a retry the task asks for itself."""
    from celery.utils.time import get_exponential_backoff_interval

    return float(get_exponential_backoff_interval(
        factor=TRANSIENT_RETRY["retry_backoff"], retries=task.request.retries,
        maximum=TRANSIENT_RETRY["retry_backoff_max"], full_jitter=TRANSIENT_RETRY["retry_jitter"]))


def connections_reset() -> None:
    """Close this worker's database connections, dead ones included: Django does not reopen a connection the server
    ended until it is closed (Celery closes them after the task; a job that still has work to do here, such as
    giving its lease back, needs a working one now). The next query opens a new connection."""
    for wrapper in connections.all(initialized_only=True):
        with contextlib.suppress(Exception):
            wrapper.close()


class TaskSchemaUnavailable(RuntimeError):
    """The schema a task was sent from could not be entered; the task did not run, in that schema or any other."""


# What a task meets before its body when the database or Redis is away (_retry_if_transient).
_START_ERRORS: tuple[type[BaseException], ...] = (TaskSchemaUnavailable, *TRANSIENT_ERRORS)


def _enter_sent_schema(task: TenantTask) -> None:
    """Puts every tenant database of the worker in the schema the message names (public when it names none)."""
    schema = get_schema_name_from_task(task, {}) or get_public_schema_name()
    wrappers: list[Any] = [connections[db] for db in task.get_tenant_databases()]  # django-tenants' wrappers
    if all(wrapper.schema_name == schema for wrapper in wrappers):
        return  # tenant-schemas-celery's task_prerun handler entered it: the usual case, nothing to look up
    try:
        if schema == get_public_schema_name():
            for wrapper in wrappers:
                wrapper.set_schema_to_public()
        else:
            tenant = task.get_tenant_for_schema(schema_name=schema)
            for wrapper in wrappers:
                wrapper.set_tenant(tenant, include_public=True)
    except Exception as exc:
        raise TaskSchemaUnavailable(f"task {task.name} cannot enter schema {schema!r}: {type(exc).__name__}") from exc


class AtriumTask(TenantTask):  # type: ignore[misc]
    abstract = True
    # True for a task that runs for a suspended tenant (the owning app decides, with `base=RunsWhileSuspended`
    # or a `may_run_suspended` of its own; config knows no app's tasks).
    runs_while_suspended = False

    def may_run_suspended(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether this call runs while its tenant is suspended; a task class may decide per call."""
        return bool(self.runs_while_suspended)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if not self.request.called_directly:  # called directly, a task runs in its caller's schema
                _enter_sent_schema(self)
            suspended = _tenant_suspended() and not self.may_run_suspended(args, kwargs)
        except _START_ERRORS as exc:
            self._retry_if_transient(exc)
            raise
        if suspended:
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

    def _retry_if_transient(self, exc: BaseException) -> None:
        """Before its body, where Celery's autoretry does not reach: a task retried on transient errors
        (TRANSIENT_RETRY) that could not enter its schema or read its tenant because the database or Redis is away
        is sent again with the same backoff, instead of failing and waiting for its job's recovery."""
        cause = exc.__cause__ if isinstance(exc, TaskSchemaUnavailable) else exc
        retry_for = tuple(getattr(self, "autoretry_for", ()) or ())
        if self.request.called_directly or not retry_for or not isinstance(cause, retry_for):
            return
        connections_reset()
        raise self.retry(exc=cause, countdown=retry_countdown(self))


class RunsWhileSuspended(AtriumTask):
    """Base of the tasks the law or the tenant's own data protection needs even while it is suspended."""

    abstract = True
    runs_while_suspended = True

"""A task runs in the schema it was sent from, or not at all.

tenant-schemas-celery switches the schema in a `task_prerun` signal handler, and Celery logs and swallows whatever
a signal handler raises: when the switch failed (the database refusing connections, "too many clients"; the
tenant deleted while its tasks waited in the queue) the task ran anyway, in whatever schema the worker's
connection held: public. config/tasks_base.py makes the switch part of the task itself, so it fails closed.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from tests.conftest import WorkerProcess, subprocess_env


def test_a_task_whose_tenant_cannot_be_found_fails_instead_of_running_in_public(tenants: Any, db: None) -> None:
    from config.tasks_base import TaskSchemaUnavailable
    from tenants.tasks import schema_probe

    # A tenant deleted while its task waited in the queue: the task's schema names no tenant any more.
    result = schema_probe.apply(headers={"_schema_name": f"gone_{uuid.uuid4().hex[:8]}"})
    assert result.failed(), result.result  # the old code returned 'public': the body ran in the public schema
    assert isinstance(result.result, TaskSchemaUnavailable)
    assert connection.schema_name == "public"
    # The same process still runs tasks in the schema they name, and public ones in public.
    assert schema_probe.apply(headers={"_schema_name": "alpha"}).get() == "alpha"
    assert schema_probe.apply(headers={"_schema_name": "public"}).get() == "public"
    with schema_context("beta"):
        assert schema_probe.apply().get() == "beta"
        assert schema_probe() == "beta"  # called directly: the caller's schema, no switch


@pytest.mark.slow
def test_a_worker_that_cannot_reach_the_database_fails_a_tenants_task_instead_of_running_it_in_public(
        tenants: Any) -> None:
    """What failed tests/tenants/test_operations.py under load: the worker's tenant lookup met "too many clients",
    and the alpha task answered 'public'. Here the database is down for real (a port nothing listens on)."""
    from tenants.tasks import schema_probe

    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(queue, subprocess_env(DATABASE_URL="postgres://postgres@127.0.0.1:1/unreachable"))
    worker.start()
    try:
        with schema_context("alpha"):
            tenant_task = schema_probe.apply_async(queue=queue)
        public_task = schema_probe.apply_async(queue=queue)
        tenant_task.get(timeout=60, propagate=False)
        assert tenant_task.state == "FAILURE", tenant_task.result  # the old code: SUCCESS, 'public'
        assert type(tenant_task.result).__name__ == "TaskSchemaUnavailable", tenant_task.result
        # The worker is otherwise up: a public task needs no tenant lookup and runs.
        assert public_task.get(timeout=60) == "public"
    finally:
        worker.stop()
    log = worker.log.read_text()
    assert f"schema_probe[{tenant_task.id}] raised unexpected: TaskSchemaUnavailable" in log, log[-3000:]


def test_every_task_the_worker_runs_checks_its_schema() -> None:
    """The check lives in AtriumTask.__call__: a task on another base would run wherever the connection stood."""
    from config.celery import app
    from config.tasks_base import AtriumTask

    app.loader.import_default_modules()
    assert "tenants.tasks.schema_probe" in app.tasks
    assert sorted(name for name, task in app.tasks.items() if not isinstance(task, AtriumTask)) == []


def test_a_resumable_task_that_cannot_reach_the_database_at_its_start_is_sent_again(
        tenants: Any, committed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GDPR job's task (retried on transient errors, config.tasks_base.TRANSIENT_RETRY) whose schema switch meets
    the database away (here once) is sent again instead of failing: the switch runs before the body, where Celery's
    autoretry does not reach. A task without that policy still fails (above)."""
    from django.db import OperationalError

    from audit.tasks import gdpr_run
    from config import tasks_base

    calls: list[int] = []
    enter = tasks_base._enter_sent_schema

    def once_away(task: Any) -> None:
        calls.append(task.request.retries)
        if len(calls) == 1:
            try:
                raise OperationalError("terminating connection due to administrator command")
            except OperationalError as exc:
                raise tasks_base.TaskSchemaUnavailable("cannot enter schema 'alpha'") from exc
        enter(task)

    monkeypatch.setattr(tasks_base, "_enter_sent_schema", once_away)
    result = gdpr_run.apply(args=[str(uuid.uuid4())], headers={"_schema_name": "alpha"})
    assert result.successful(), result.result  # the old code: failed with TaskSchemaUnavailable
    assert result.get() == "skipped"  # no such job: the body ran, in alpha
    assert calls == [0, 1]
    connection.set_schema_to_public()

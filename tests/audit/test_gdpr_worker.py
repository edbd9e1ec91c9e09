"""A real Celery worker killed (SIGKILL) in the middle of a deletion; a restarted worker finishes the job with
the same end state and no duplicate effect."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import WorkerProcess, subprocess_env

pytestmark = pytest.mark.slow
CONVERSATIONS = 300
MESSAGES_PER = 2


@pytest.fixture
def worker_env() -> dict[str, str]:
    queue = f"gdpr-{uuid.uuid4().hex[:8]}"
    return subprocess_env(ATRIUM_GDPR_QUEUE=queue, ATRIUM_GDPR_BATCH="20", ATRIUM_GDPR_BATCH_PAUSE_MS="60",
                          ATRIUM_GDPR_LEASE_S="2")


@pytest.fixture
def subject(tenants: dict[str, Any], committed: None) -> Iterator[Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import tenant_context

    from inference.models import Conversation, Message

    tenant = tenants["alpha"]
    with tenant_context(tenant):
        name = f"doomed-{uuid.uuid4().hex[:6]}"
        user = get_user_model().objects.create_user(username=name, email=f"{name}@example.com")
        user.groups.add(Group.objects.get(name="basic_user"))
        conversations = Conversation.objects.bulk_create(
            [Conversation(user=user, model="claude-haiku-5-5", title=f"{name} {i}") for i in range(CONVERSATIONS)])
        Message.objects.bulk_create([
            Message(conversation=c, role="user" if j % 2 == 0 else "assistant",
                    content=[{"type": "text", "text": f"{name} {j}"}])
            for c in conversations for j in range(MESSAGES_PER)])
        officer = get_user_model().objects.create_user(username=f"officer-{name}")
        officer.groups.add(Group.objects.get(name="compliance_officer"))
    yield user, officer
    with tenant_context(tenant):
        get_user_model().objects.filter(username__in=[name, f"officer-{name}"]).delete()


def _job(tenant: Any, job_id: Any) -> Any:
    from django_tenants.utils import tenant_context

    from audit.models import GdprJob

    with tenant_context(tenant):
        return GdprJob.objects.get(pk=job_id)


def test_worker_killed_mid_deletion_then_restarted_finishes_the_job(tenants: dict[str, Any], committed: None,
                                                                     subject: Any, worker_env: dict[str, str],
                                                                     settings: Any) -> None:
    from django.contrib.auth import get_user_model
    from django_tenants.utils import tenant_context

    from audit.chain import chain_verify
    from audit.gdpr import gdpr_request
    from audit.models import AuditEntry, DeletionReceipt
    from audit.tasks import gdpr_recover
    from inference.models import Conversation

    tenant = tenants["alpha"]
    user, officer = subject
    queue = worker_env["ATRIUM_GDPR_QUEUE"]
    settings.ATRIUM_GDPR_QUEUE = queue
    worker = WorkerProcess(queue, worker_env)
    worker.start()
    try:
        with tenant_context(tenant):
            job = gdpr_request(kind="deletion", subject=user, requested_by=officer)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = _job(tenant, job.id)
            if current.step == "conversations" and current.counts.get("conversations", 0) >= 60:
                break
            time.sleep(0.05)
        worker.kill()
        killed = _job(tenant, job.id)
        assert killed.status == "running", "the kill must land mid-job"
        assert 0 < killed.counts["conversations"] < CONVERSATIONS
        with tenant_context(tenant):
            left = Conversation.objects.filter(user_id=user.pk).count()
        assert left == CONVERSATIONS - killed.counts["conversations"], "counts commit with their batch"

        worker.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            gdpr_recover.apply_async(queue=queue)  # what beat does every minute
            if _job(tenant, job.id).status == "done":
                break
            time.sleep(1.0)
        done = _job(tenant, job.id)
        assert done.status == "done", (done.status, done.step, done.error)
        assert done.attempts >= 2
        assert done.counts["conversations"] == CONVERSATIONS
        assert done.counts["messages"] == CONVERSATIONS * MESSAGES_PER
        with tenant_context(tenant):
            assert not Conversation.objects.filter(user_id=user.pk).exists()
            assert DeletionReceipt.objects.filter(job_id=job.id).count() == 1
            assert AuditEntry.objects.filter(event_type="deletion_completed",
                                             metadata__job=str(job.id)).count() == 1
            account = get_user_model().objects.filter(pk=user.pk).first()
            assert account is None or not account.is_active
            assert chain_verify().ok
    finally:
        worker.stop()



def worker_backends_end(worker: WorkerProcess) -> list[int]:
    """End the PostgreSQL backends of the worker's processes (found by their client ports), as a PostgreSQL
    restart, a failover or an administrator's pg_terminate_backend does. Returns their pids."""
    import psutil
    from django.db import connection

    assert worker.proc is not None
    main = psutil.Process(worker.proc.pid)
    pg_port = int(connection.settings_dict.get("PORT") or 5432)
    ports = [conn.laddr.port for process in [main, *main.children(recursive=True)]
             for conn in process.net_connections(kind="tcp")
             if conn.status == psutil.CONN_ESTABLISHED and conn.raddr and conn.raddr.port == pg_port]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND client_port = ANY(%s)", [ports])
        return [row[0] for row in cursor.fetchall()]


def test_the_workers_database_connection_ended_mid_deletion_the_job_resumes_by_itself(
        tenants: dict[str, Any], committed: None, subject: Any, settings: Any) -> None:
    """PostgreSQL ends the worker's connections in the middle of a deletion (what a restart, a failover or
    pg_terminate_backend does): the task is sent again with backoff and the job finishes, exactly once, without
    being marked failed and without waiting for the recovery (the lease is long here: gdpr_recover is never sent)."""
    from django.contrib.auth import get_user_model
    from django_tenants.utils import tenant_context

    from audit.chain import chain_verify
    from audit.gdpr import gdpr_request
    from audit.models import AuditEntry, DeletionReceipt
    from inference.models import Conversation, Message

    tenant = tenants["alpha"]
    user, officer = subject
    queue = f"gdpr-{uuid.uuid4().hex[:8]}"
    settings.ATRIUM_GDPR_QUEUE = queue
    worker = WorkerProcess(queue, subprocess_env(ATRIUM_GDPR_QUEUE=queue, ATRIUM_GDPR_BATCH="20",
                                                 ATRIUM_GDPR_BATCH_PAUSE_MS="60", ATRIUM_GDPR_LEASE_S="3600"))
    worker.start()
    try:
        with tenant_context(tenant):
            job = gdpr_request(kind="deletion", subject=user, requested_by=officer)
        deadline = time.monotonic() + 60  # against a hang only
        while time.monotonic() < deadline:
            current = _job(tenant, job.id)
            if current.step == "conversations" and current.counts.get("conversations", 0) >= 60:
                break
            time.sleep(0.05)
        assert worker_backends_end(worker), "the worker holds a database connection while it runs the job"
        cut = _job(tenant, job.id)
        assert cut.status == "running" and 0 < cut.counts["conversations"] < CONVERSATIONS, "cut mid-job"

        statuses = set()
        deadline = time.monotonic() + 180  # against a hang only: retries come after 0-4 s, then 0-8 s...
        while time.monotonic() < deadline:
            current = _job(tenant, job.id)
            statuses.add(current.status)
            if current.status in ("done", "failed"):
                break
            time.sleep(0.2)
        done = _job(tenant, job.id)
        assert "failed" not in statuses and done.status == "done", (statuses, done.status, done.step, done.error)
        assert done.attempts >= 2, "the job ran again after the cut"
        assert done.counts["conversations"] == CONVERSATIONS
        assert done.counts["messages"] == CONVERSATIONS * MESSAGES_PER
        with tenant_context(tenant):
            assert not Conversation.objects.filter(user_id=user.pk).exists()
            assert not Message.objects.filter(conversation__user_id=user.pk).exists()
            assert DeletionReceipt.objects.filter(job_id=job.id).count() == 1
            assert AuditEntry.objects.filter(event_type="deletion_completed",
                                             metadata__job=str(job.id)).count() == 1
            assert not AuditEntry.objects.filter(event_type="deletion_failed", metadata__job=str(job.id)).exists()
            account = get_user_model().objects.filter(pk=user.pk).first()
            assert account is None or not account.is_active
            assert chain_verify().ok
    finally:
        worker.stop()

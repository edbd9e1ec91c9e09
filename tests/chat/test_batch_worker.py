"""Message batches run by a real Celery worker: created with the official Python SDK, run through the gateway in
the worker process, results read back as JSON Lines; a worker killed (SIGKILL) mid-batch, then restarted and the
batch recovered, leaves every request recorded exactly once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from inference.simulator import Simulator
from tests.audit.test_gdpr_worker import worker_backends_end
from tests.chat.conftest import SIM_ENV
from tests.chat.test_v1_count_tokens import in_process  # noqa: F401 - fixture
from tests.conftest import WorkerProcess, subprocess_env

pytestmark = pytest.mark.slow


@pytest.fixture
def worker_env(simulator: Simulator, settings: Any) -> dict[str, str]:
    queue = f"batches-{uuid.uuid4().hex[:8]}"
    settings.ATRIUM_BATCH_QUEUE = queue
    settings.ATRIUM_BATCH_LEASE_S = 2
    return subprocess_env(**SIM_ENV, ATRIUM_BATCH_QUEUE=queue, ATRIUM_BATCH_LEASE_S="2",
                          ATRIUM_ANTHROPIC_BASE_URL=f"{simulator.url}/anthropic",
                          ATRIUM_BEDROCK_BASE_URL=f"{simulator.url}/bedrock/{{region}}",
                          ATRIUM_VERTEX_BASE_URL=f"{simulator.url}/vertex/v1",
                          ATRIUM_PROVIDER_ORDER="anthropic,bedrock:us-east-1,vertex:us-east5")


@pytest.fixture
def client(committed_user: Any, tenants: dict[str, Any], in_process: Any,  # noqa: F811
           simulator: Simulator) -> Iterator[tuple[anthropic.Anthropic, Any]]:
    from tests.chat.conftest import quota_keys_clear

    simulator.faults.clear()
    simulator.reset_requests()
    quota_keys_clear()
    user, key = committed_user("alpha")
    yield in_process(tenants["alpha"], key), user
    simulator.faults.clear()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(600):  # a loaded machine: up to about two minutes
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def records(tenant: Any, batch_id: str) -> tuple[int, int]:
    from django_tenants.utils import tenant_context

    from audit.models import AuditEntry
    from inference.models import UsageRecord

    with tenant_context(tenant):
        return (UsageRecord.objects.filter(request_id__startswith=f"{batch_id}:").count(),
                AuditEntry.objects.filter(event_type="model_call", request_id__startswith=f"{batch_id}:").count())


def ask(n: int) -> list[Any]:
    return [{"custom_id": f"q{i}", "params": {"model": "claude-haiku-5-5", "max_tokens": 32,
                                              "messages": [{"role": "user", "content": f"Question number {i}"}]}}
            for i in range(n)]


def test_a_worker_runs_the_batch(client: Any, worker_env: dict[str, str], tenants: dict[str, Any]) -> None:
    sdk, _user = client
    worker = WorkerProcess(worker_env["ATRIUM_BATCH_QUEUE"], worker_env)
    worker.start()
    try:
        created = sdk.messages.batches.create(requests=ask(4))
        wait_for(lambda: sdk.messages.batches.retrieve(created.id).processing_status == "ended", "the batch")
    finally:
        worker.stop()
    batch = sdk.messages.batches.retrieve(created.id)
    assert batch.request_counts.succeeded == 4
    results = list(sdk.messages.batches.results(created.id))
    assert [r.custom_id for r in results] == ["q0", "q1", "q2", "q3"]
    assert all(r.result.type == "succeeded" and r.result.message.content[0].text for r in results)  # type: ignore[union-attr]
    assert records(tenants["alpha"], created.id) == (4, 4)


def test_worker_killed_mid_batch_then_recovered_records_each_request_once(
        client: Any, worker_env: dict[str, str], tenants: dict[str, Any], simulator: Simulator) -> None:
    from django_tenants.utils import tenant_context

    from inference.batches import batch_recover
    from inference.models import MessageBatchRequest

    sdk, _user = client
    simulator.faults.set("anthropic", latency_ms=400)  # each request takes a while: the kill lands mid-batch
    worker = WorkerProcess(worker_env["ATRIUM_BATCH_QUEUE"], worker_env)
    worker.start()
    created = sdk.messages.batches.create(requests=ask(8))

    def done() -> int:
        with tenant_context(tenants["alpha"]):
            return MessageBatchRequest.objects.filter(batch_id=created.id).exclude(result_type="").count()

    try:
        wait_for(lambda: done() >= 2, "two results")
        worker.kill()
    finally:
        worker.stop()
    assert done() < 8
    simulator.faults.clear()
    worker = WorkerProcess(worker_env["ATRIUM_BATCH_QUEUE"], worker_env)
    worker.start()
    try:
        def recovered() -> bool:
            with tenant_context(tenants["alpha"]):
                batch_recover()  # what beat runs every minute; a live lease is left alone
            return sdk.messages.batches.retrieve(created.id).processing_status == "ended"

        wait_for(recovered, "the recovered batch")
    finally:
        worker.stop()
    assert sdk.messages.batches.retrieve(created.id).request_counts.succeeded == 8
    assert records(tenants["alpha"], created.id) == (8, 8)
    assert [r.custom_id for r in sdk.messages.batches.results(created.id)] == [f"q{i}" for i in range(8)]


def test_the_workers_database_connection_ended_mid_batch_the_batch_resumes_by_itself(
        client: Any, worker_env: dict[str, str], tenants: dict[str, Any], simulator: Simulator,
        settings: Any) -> None:
    """PostgreSQL ends the worker's connections mid-batch (a restart, a failover, pg_terminate_backend): the task is
    sent again with backoff and the batch ends with every request recorded once, without batch_recover (the
    lease is long here: only the task's own retry can resume it)."""
    from django_tenants.utils import tenant_context

    from inference.models import MessageBatchRequest

    worker_env = {**worker_env, "ATRIUM_BATCH_LEASE_S": "3600"}
    settings.ATRIUM_BATCH_LEASE_S = 3600
    sdk, _user = client
    simulator.faults.set("anthropic", latency_ms=400)  # each request takes a while: the cut lands mid-batch
    worker = WorkerProcess(worker_env["ATRIUM_BATCH_QUEUE"], worker_env)
    worker.start()
    try:
        created = sdk.messages.batches.create(requests=ask(8))

        def done() -> int:
            with tenant_context(tenants["alpha"]):
                return MessageBatchRequest.objects.filter(batch_id=created.id).exclude(result_type="").count()

        wait_for(lambda: done() >= 2, "two results")
        assert worker_backends_end(worker), "the worker holds a database connection while it runs the batch"
        assert done() < 8
        simulator.faults.clear()
        wait_for(lambda: sdk.messages.batches.retrieve(created.id).processing_status == "ended", "the batch")
    finally:
        worker.stop()
    assert sdk.messages.batches.retrieve(created.id).request_counts.succeeded == 8
    assert records(tenants["alpha"], created.id) == (8, 8)
    assert [r.custom_id for r in sdk.messages.batches.results(created.id)] == [f"q{i}" for i in range(8)]


def test_beat_task_expires_results_in_the_tenant_it_was_sent_from(celery_worker_process: Any, committed: None,
                                                                   tenants: dict[str, Any]) -> None:
    """The retention task as beat sends it (once per tenant, from that tenant's schema), run by a real worker:
    beta's batch past the retention loses its requests and results; alpha's, as old, is not touched by it."""
    from datetime import timedelta

    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from inference.batches import new_batch_id
    from inference.models import MessageBatch, MessageBatchRequest
    from inference.tasks import batch_results_expire

    made: dict[str, str] = {}
    old = timezone.now() - timedelta(days=40)
    for schema in ("alpha", "beta"):
        with tenant_context(tenants[schema]):
            batch = MessageBatch.objects.create(id=new_batch_id(), created_at=old, expires_at=old, ended_at=old,
                                                status=MessageBatch.Status.ENDED, total=2, succeeded_count=2)
            MessageBatchRequest.objects.bulk_create([
                MessageBatchRequest(batch=batch, position=i, custom_id=f"r{i}", params={"model": "haiku"},
                                    result_type="succeeded", result={"type": "succeeded"}) for i in range(2)])
            made[schema] = batch.id
    try:
        with tenant_context(tenants["beta"]):
            batch_results_expire.apply_async(queue=celery_worker_process.queue)

            def archived() -> bool:
                return MessageBatch.objects.get(pk=made["beta"]).archived_at is not None

            wait_for(archived, "beta's batch archived by the worker")
            assert not MessageBatchRequest.objects.filter(batch_id=made["beta"]).exists()
        with tenant_context(tenants["alpha"]):
            assert MessageBatch.objects.get(pk=made["alpha"]).archived_at is None
            assert MessageBatchRequest.objects.filter(batch_id=made["alpha"]).count() == 2
    finally:
        for schema, batch_id in made.items():
            with tenant_context(tenants[schema]):
                MessageBatch.objects.filter(pk=batch_id).delete()

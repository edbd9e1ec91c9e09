"""Message Batches API with the official Python SDK (`client.messages.batches.*`, in process), the batch run here
by the task's own function (tests/chat/test_batch_worker.py runs it in a real Celery worker): every request
through the gateway (policy, quota, router, usage, one audit entry each), results as JSON Lines, cancel, and
a task retried after a crash that records nothing twice."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from audit.models import AuditEntry
from inference import batches
from inference.models import MessageBatch, MessageBatchRequest, UsageRecord
from tests.chat.test_v1_count_tokens import in_process  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def request(custom_id: str, text: str = "Hello", model: str = "claude-haiku-5-5", **params: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": {"model": model, "max_tokens": 64,
                                               "messages": [{"role": "user", "content": text}], **params}}


@pytest.fixture
def basic(tenant_a: Any, make_user: Any, api_key_for: Any) -> tuple[Any, str]:
    user = make_user(tenant_a, "basic_user")
    return user, api_key_for(tenant_a, user)


@pytest.fixture
def sdk(sim: Any, tenant_a: Any, basic: Any, in_process: Any) -> anthropic.Anthropic:  # noqa: F811
    return in_process(tenant_a, basic[1])  # type: ignore[no-any-return]


@pytest.fixture
def no_queue(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Batches are run by the test (batches.batch_run), never queued to a broker here."""
    queued: list[tuple[str, Any]] = []
    monkeypatch.setattr(batches, "batch_enqueue", lambda batch_id, countdown=None: queued.append((batch_id, countdown)))
    return queued


def test_create_run_retrieve_results(sdk: anthropic.Anthropic, sim: Any, basic: Any, tenant_a: Any,
                                     in_tenant: Any, no_queue: Any) -> None:
    user, _key = basic
    created = sdk.messages.batches.create(requests=[  # type: ignore[list-item]
        request("first", "What is a circuit breaker?"), request("second", "What is a token bucket?"),
        request("opus", model="claude-opus-5-5")])  # basic_user may not use opus: errored, alone
    assert created.id.startswith("msgbatch_") and created.processing_status == "in_progress"
    assert created.request_counts.processing == 3 and created.results_url is None
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        sdk.messages.batches.results(created.id)
    with in_tenant(tenant_a):
        assert batches.batch_run(created.id) == "done"
    ended = sdk.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert (ended.request_counts.succeeded, ended.request_counts.errored, ended.request_counts.processing) == (2, 1, 0)
    results = {r.custom_id: r.result for r in sdk.messages.batches.results(created.id)}
    assert list(results) == ["first", "second", "opus"]
    assert results["first"].type == "succeeded"
    assert results["first"].message.content[0].text  # type: ignore[union-attr]
    assert results["first"].message.model == "claude-haiku-5-5"  # type: ignore[union-attr]
    assert results["opus"].type == "errored"
    assert results["opus"].error.error.type == "permission_error"  # type: ignore[union-attr]
    with in_tenant(tenant_a):
        calls = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk)
        assert sorted(calls.values_list("request_id", flat=True)) == [f"{created.id}:first", f"{created.id}:second"]
        assert all(e.metadata["source"] == "batch" and e.metadata["batch"] == created.id for e in calls)
        refused = AuditEntry.objects.get(event_type="model_call_refused", user_id=user.pk)
        assert refused.metadata["reason"] == "access.use_opus"
        assert UsageRecord.objects.filter(request_id__startswith=created.id).count() == 2
        assert AuditEntry.objects.filter(event_type="message_batch_created").exists()
        assert AuditEntry.objects.filter(event_type="message_batch_ended").exists()
    assert len([r for r in sim.requests() if r["provider"] == "anthropic"]) == 2


def test_a_retried_task_never_records_twice(sdk: anthropic.Anthropic, sim: Any, tenant_a: Any, in_tenant: Any,
                                            no_queue: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    created = sdk.messages.batches.create(requests=[request(f"r{i}", f"Question {i}") for i in range(5)])  # type: ignore[misc]
    real = batches._run_one
    calls = {"n": 0}

    def crashing(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("worker killed")  # the third request never finishes: nothing of it is committed
        return real(*args)

    monkeypatch.setattr(batches, "_run_one", crashing)
    with in_tenant(tenant_a), pytest.raises(SystemExit):
        batches.batch_run(created.id)
    with in_tenant(tenant_a):
        assert MessageBatchRequest.objects.filter(batch_id=created.id, result_type="succeeded").count() == 2
        assert batches.batch_run(created.id) == "skipped"  # the dead worker's lease still holds
        MessageBatch.objects.filter(pk=created.id).update(lease_until=None)  # ... until it expires
        monkeypatch.setattr(batches, "_run_one", real)
        assert batches.batch_run(created.id) == "done"
        assert batches.batch_run(created.id) == "skipped"
        ids = [f"{created.id}:r{i}" for i in range(5)]
        assert UsageRecord.objects.filter(request_id__in=ids).count() == 5
        assert AuditEntry.objects.filter(event_type="model_call", request_id__in=ids).count() == 5
    assert [r.result.type for r in sdk.messages.batches.results(created.id)] == ["succeeded"] * 5


def test_cancel_before_it_runs(sdk: anthropic.Anthropic, sim: Any, tenant_a: Any, in_tenant: Any,
                               no_queue: Any) -> None:
    created = sdk.messages.batches.create(requests=[request("a"), request("b")])  # type: ignore[list-item]
    canceling = sdk.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    with in_tenant(tenant_a):
        assert batches.batch_run(created.id) == "canceled"
    ended = sdk.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 2
    assert [r.result.type for r in sdk.messages.batches.results(created.id)] == ["canceled", "canceled"]
    assert not sim.requests()
    assert sdk.messages.batches.cancel(created.id).processing_status == "ended"  # nothing left to cancel
    deleted = sdk.messages.batches.delete(created.id)
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.batches.retrieve(created.id)


def test_a_spent_quota_pauses_the_batch(sdk: anthropic.Anthropic, sim: Any, tenant_a: Any, in_tenant: Any,
                                        no_queue: Any, tenant_update: Any) -> None:
    created = sdk.messages.batches.create(requests=[request("a"), request("b")])  # type: ignore[list-item]
    tenant_update(tenant_a, requests_per_minute=1)
    with in_tenant(tenant_a):
        assert batches.batch_run(created.id) == "paused"
    assert no_queue[-1][0] == created.id and no_queue[-1][1] >= 1  # queued again after retry-after
    batch = sdk.messages.batches.retrieve(created.id)
    assert batch.processing_status == "in_progress" and batch.request_counts.succeeded == 1


def test_list_and_pages(sdk: anthropic.Anthropic, sim: Any, no_queue: Any) -> None:
    made = [sdk.messages.batches.create(requests=[request("x")]).id for _ in range(3)]  # type: ignore[list-item]
    listed = [b.id for b in sdk.messages.batches.list(limit=2)]  # the SDK follows has_more / after_id
    assert listed == list(reversed(made))
    first_page = sdk.messages.batches.list(limit=2)
    assert first_page.has_more and len(first_page.data) == 2


@pytest.mark.parametrize(("body", "fragment"), [
    ({"requests": []}, "requests"),
    ({"requests": [{"custom_id": "a"}]}, "requests.0.params"),
    ({"requests": [request("a"), request("a")]}, "used twice"),
    ({"requests": [request("bad id!")]}, "requests.0.custom_id"),
    ({"requests": [{**request("a"), "extra": 1}]}, "requests.0"),
    ({"requests": [request("a", max_tokens=0)]}, "requests.0.params.max_tokens"),
    ({"requests": [request("a", stream=True)]}, "requests.0.params.stream"),
    ({"requests": [request("a")], "other": 1}, "one field"),
])
def test_bad_batches_are_anthropic_400s(sim: Any, client_a: Any, basic: Any, body: Any, fragment: str) -> None:
    response = client_a.post("/v1/messages/batches", data=json.dumps(body), content_type="application/json",
                             HTTP_X_API_KEY=basic[1])
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and fragment in error["message"]
    assert not MessageBatch.objects.exists()


def test_other_users_batches_are_not_found(sim: Any, client_a: Any, basic: Any, tenant_a: Any, make_user: Any,
                                           api_key_for: Any, no_queue: Any) -> None:
    body = json.dumps({"requests": [request("a")]})
    created = client_a.post("/v1/messages/batches", data=body, content_type="application/json",
                            HTTP_X_API_KEY=basic[1]).json()
    other = api_key_for(tenant_a, make_user(tenant_a, "basic_user"))
    for path in (f"/v1/messages/batches/{created['id']}", f"/v1/messages/batches/{created['id']}/results"):
        response = client_a.get(path, HTTP_X_API_KEY=other)
        assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
    assert client_a.post(f"/v1/messages/batches/{created['id']}/cancel", HTTP_X_API_KEY=other).status_code == 404
    assert client_a.get("/v1/messages/batches", HTTP_X_API_KEY=other).json()["data"] == []
    assert client_a.put("/v1/messages/batches", HTTP_X_API_KEY=basic[1]).status_code == 405
    assert client_a.get("/v1/messages/batches?limit=0", HTTP_X_API_KEY=basic[1]).status_code == 400


def test_results_are_deleted_after_the_retention_and_then_answer_a_clear_404(
        sdk: anthropic.Anthropic, sim: Any, tenant_a: Any, in_tenant: Any, no_queue: Any, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    settings.ATRIUM_BATCH_RESULTS_RETENTION_DAYS = 29
    old, young = (sdk.messages.batches.create(requests=[request("a"), request("b")]).id  # type: ignore[list-item]
                  for _ in range(2))
    with in_tenant(tenant_a):
        for batch_id, age in ((old, 30), (young, 28)):
            assert batches.batch_run(batch_id) == "done"
            MessageBatch.objects.filter(pk=batch_id).update(created_at=timezone.now() - timedelta(days=age))
        assert batches.batch_results_expire() == 1
        assert batches.batch_results_expire() == 0  # once
        assert not MessageBatchRequest.objects.filter(batch_id=old).exists()  # prompts and results both gone
        assert MessageBatchRequest.objects.filter(batch_id=young).count() == 2
        entry = AuditEntry.objects.get(event_type="message_batch_results_deleted")
        assert entry.metadata == {"batch": old, "requests": 2, "retention_days": 29}

    archived = sdk.messages.batches.retrieve(old)  # the batch itself stays, with its counts
    assert archived.archived_at is not None and archived.results_url is None
    assert archived.request_counts.succeeded == 2
    with pytest.raises(anthropic.NotFoundError) as refused:  # the SDK's own class for Anthropic's 404
        sdk.get(f"/v1/messages/batches/{old}/results", cast_to=object)
    error = refused.value.body["error"]  # type: ignore[index]
    assert error["type"] == "not_found_error"
    assert "were deleted on" in error["message"] and "kept 29 days after a batch is created" in error["message"]
    assert [r.custom_id for r in sdk.messages.batches.results(young)] == ["a", "b"]
    assert sdk.messages.batches.retrieve(young).archived_at is None
    assert sdk.messages.batches.delete(old).type == "message_batch_deleted"  # an archived batch can go entirely


def test_beat_expires_batch_results_in_every_tenant_even_suspended(settings: Any) -> None:
    from config.tasks_base import RunsWhileSuspended
    from inference.tasks import batch_results_expire

    entry = settings.CELERY_BEAT_SCHEDULE["batch-results-expiry"]
    assert entry["task"] == batch_results_expire.name and "tenant_schemas" not in entry  # fans out per tenant
    assert isinstance(batch_results_expire, RunsWhileSuspended)

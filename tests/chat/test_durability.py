"""The tenant's record policy at admission, the request id as the records' key, and quota counters rebuilt from
recorded usage when Redis comes back empty (in-process; tests/test_faults.py does the same under real faults)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from access.quotas import epoch_key, quota_tokens_used_today, tenant_prefix
from config.redis import redis_client
from inference.records import writer
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def basic(tenant_a: Any, make_user: Any, api_key_for: Any) -> tuple[Any, str]:
    user = make_user(tenant_a, "basic_user")
    return user, api_key_for(tenant_a, user)


@pytest.fixture
def failing_records(tenant_a: Any) -> Any:
    """tenant_a's records are failing to commit (what the writer reports while the database refuses them)."""
    writer._ensure_thread()  # this process's writer state (a fork would start afresh)
    writer._failing[tenant_a.schema_name] = 1
    yield
    writer._failing.pop(tenant_a.schema_name, None)


def test_fail_closed_refuses_with_503_before_anything_is_sent_upstream(sim: Any, client_a: Any, basic: Any,
                                                                       failing_records: None,
                                                                       in_tenant: Any, tenant_a: Any) -> None:
    from audit.models import AuditEntry

    response = post_messages(client_a, basic[1], body())
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "api_error" and "cannot record" in error["message"]
    assert sim.requests("anthropic") == [] and sim.requests("bedrock") == [] and sim.requests("vertex") == []
    with in_tenant(tenant_a):
        refusal = AuditEntry.objects.filter(event_type="model_call_refused", user_id=basic[0].pk).get()
    assert refusal.metadata["reason"] == "records_unavailable"


def test_serve_and_journal_tenants_are_served_meanwhile(sim: Any, client_a: Any, basic: Any, failing_records: None,
                                                        tenant_a: Any, tenant_update: Any) -> None:
    tenant_update(tenant_a, record_policy="serve_and_journal")
    response = post_messages(client_a, basic[1], body())
    assert response.status_code == 200, response.content


def test_the_records_carry_the_request_id_the_client_sees(sim: Any, client_a: Any, basic: Any, in_tenant: Any,
                                                          tenant_a: Any) -> None:
    from audit.models import AuditEntry
    from inference.models import UsageRecord

    response = post_messages(client_a, basic[1], body())
    request_id = response["request-id"]
    # A client that sends its own X-Request-Id twice gets two records, not one swallowed as a "retry".
    again = [post_messages(client_a, basic[1], body(), HTTP_X_REQUEST_ID="client-7") for _ in range(2)]
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(request_id=request_id)
        assert entry.metadata["request_id"] == request_id and entry.user_id == basic[0].pk
        usage = UsageRecord.objects.get(request_id=request_id)
        message = response.json()["usage"]
        assert (usage.input_tokens, usage.output_tokens) == (message["input_tokens"], message["output_tokens"])
        assert all(r.status_code == 200 for r in again)
        assert AuditEntry.objects.filter(request_id__startswith="client-7.").count() == 2


def test_counters_lost_with_redis_are_rebuilt_from_recorded_usage(sim: Any, client_a: Any, basic: Any,
                                                                  tenant_a: Any, in_tenant: Any) -> None:
    from django.db.models import Sum

    from inference.models import UsageRecord

    for _ in range(3):
        assert post_messages(client_a, basic[1], body()).status_code == 200
    for key in redis_client().scan_iter(f"{tenant_prefix(tenant_a.schema_name)}*"):  # Redis restarted empty
        redis_client().delete(key)
    assert redis_client().get(epoch_key(tenant_a.schema_name)) is None
    response = post_messages(client_a, basic[1], body())  # admission rebuilds first
    assert response.status_code == 200
    with in_tenant(tenant_a):
        recorded = UsageRecord.objects.filter(day=datetime.now(UTC).date()).aggregate(t=Sum("charged_tokens"))["t"]
    assert recorded and quota_tokens_used_today(tenant=tenant_a) == recorded
    assert redis_client().get(epoch_key(tenant_a.schema_name)) is not None


def test_once_a_deletion_starts_the_subject_is_refused_and_late_records_are_redacted(
        sim: Any, client_a: Any, basic: Any, tenant_a: Any, in_tenant: Any, make_user: Any) -> None:
    """Erasure wins: the subject's key is refused from the request on, and a call that was already in flight
    (its record written after the deletion started) leaves nothing linked to them."""
    import uuid

    from audit.gdpr import gdpr_request
    from audit.models import AuditEntry
    from inference.models import UsageDaily, UsageRecord
    from inference.records import records_write
    from tests.inference.test_recorder_writes import _record

    user, key = basic
    officer = make_user(tenant_a, "compliance_officer")
    in_flight = _record(tenant_a, user.pk, f"req_{uuid.uuid4().hex}")
    in_flight.audit.personal = {"username": user.get_username(), "ip": "198.51.100.4"}
    with in_tenant(tenant_a):
        gdpr_request(kind="deletion", subject=user, requested_by=officer)
    refused = post_messages(client_a, key, body())
    assert refused.status_code == 401
    assert records_write([in_flight]) == []  # the in-flight call's records arrive after the deletion started
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(request_id=in_flight.request_id)
        assert entry.user_id is None and entry.personal == {}
        assert entry.actor  # the pseudonym stays: the trail still shows one actor's calls
        assert not UsageRecord.objects.filter(user_id=user.pk).exists()
        assert not UsageDaily.objects.filter(user_id=user.pk).exists()
        assert UsageRecord.objects.get(request_id=in_flight.request_id).user_id is None
        from audit.chain import chain_verify

        assert chain_verify().ok


def test_redis_unreachable_is_a_clear_503_before_anything_is_sent_upstream(sim: Any, client_a: Any, basic: Any,
                                                                          settings: Any) -> None:
    from config.redis import redis_client, redis_script
    from tests.conftest import free_port

    original = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    redis_client.cache_clear()
    redis_script.cache_clear()
    try:
        response = post_messages(client_a, basic[1], body())
    finally:
        settings.REDIS_URL = original
        redis_client.cache_clear()
        redis_script.cache_clear()
    assert response.status_code == 503
    assert response.json()["error"]["message"].startswith("Atrium cannot check quotas right now.")
    assert sim.requests() == []


@pytest.mark.parametrize(("upstream", "fault"), [("answered", "commit"), ("failed", "commit"), ("answered", "prices")])
def test_a_call_whose_records_could_not_be_written_gives_its_reservation_back(
        sim: Any, client_a: Any, basic: Any, tenant_a: Any, tenant_update: Any, monkeypatch: pytest.MonkeyPatch,
        upstream: str, fault: str) -> None:
    """Admitted, then its records refused or never made (the database down: the commit fails, or the price table,
    reloaded every ATRIUM_CATALOG_CACHE_S when the call is priced, cannot be read): no usage record will ever
    settle the call, so the gateway gives the reservation back at once instead of leaving it held until the
    reaper's TTL (a served test run whose PostgreSQL refused connections read 1377 tokens in the day's counter
    against 975 recorded: two reservations of 201 tokens left held)."""
    from django.db import OperationalError

    import inference.records as records
    from inference.catalog import pricing

    tenant_update(tenant_a, tokens_per_day=3000)
    if fault == "commit":
        monkeypatch.setattr(records, "_records_commit", lambda batch, persist=None: (list(batch), []))
    else:
        def unreadable() -> Any:
            raise OperationalError("connection failed: FATAL:  sorry, too many clients already")

        pricing._prices.forget()
        monkeypatch.setattr(pricing._prices, "_load", unreadable)
    if upstream == "failed":
        for provider, region in (("anthropic", ""), ("bedrock", "*"), ("vertex", "*")):
            sim.faults.set(provider, region, status=503)
    response = post_messages(client_a, basic[1], body())
    assert response.status_code >= 500, response.content  # RecordNotWritten, or the database's 503
    assert sim.requests("anthropic")  # it was admitted and sent upstream
    assert quota_tokens_used_today(tenant=tenant_a) == 0


def test_an_admission_whose_answer_was_lost_gives_back_what_it_reserved(sim: Any, client_a: Any, basic: Any,
                                                                        tenant_a: Any, tenant_update: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The admission script ran (the tokens are reserved) and its answer never arrived (the connection reset, or
    the socket timed out, after Redis executed it): the call is refused as Redis unavailable, and what the script
    may have reserved goes back at once instead of staying held until the reaper's TTL. No retry: the lane sends a
    command once (config.redis._Lane; these connections' Retry has no retries)."""
    from config import redis as lanes

    tenant_update(tenant_a, tokens_per_day=3000)
    exchange = lanes._Lane.exchange
    lost: list[bytes] = []

    def answer_lost(lane: Any, packed: bytes) -> Any:
        reply = exchange(lane, packed)  # NOSCRIPT (first use in this process) raises here, before anything ran
        if not lost:
            lost.append(packed)
            lane.disconnect()
            raise lanes.RedisConnectionError("Connection reset by peer (after the script ran)")
        return reply

    monkeypatch.setattr(lanes._Lane, "exchange", answer_lost)
    response = post_messages(client_a, basic[1], body())
    assert lost and response.status_code == 503, response.content
    assert response.json()["error"]["message"].startswith("Atrium cannot check quotas right now.")
    assert sim.requests() == []
    assert quota_tokens_used_today(tenant=tenant_a) == 0
    monkeypatch.undo()
    assert post_messages(client_a, basic[1], body()).status_code == 200  # the next call is admitted as usual

"""The settlement owed at a process's exit (BatchWriter.stop runs settle_pending until it returns True) must not
be declared done while the writer thread's own settlement of the same records is still in flight: the process
exits right after, and a settlement not yet through is lost (the counters keep the reservation instead of the
usage; issue 13). Against a redis-server of the test's own, stopped (SIGSTOP) while the first settlement waits."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from access.quotas import Reservation, epoch_key, tpd_key
from audit.services import AuditEvent
from config.redis import redis_client, redis_reset
from inference import records
from inference.services import UsageCount
from tests.chat.test_faults import OwnRedis


@pytest.fixture
def own_redis(settings: Any) -> Iterator[OwnRedis]:
    own = OwnRedis()
    own.start()
    settings.REDIS_URL = own.url
    redis_reset()
    try:
        yield own
    finally:
        own.kill()
        redis_reset()


def test_the_exits_settlement_waits_for_the_writers_settlement_in_flight(own_redis: OwnRedis,
                                                                           tenant_a: Any) -> None:
    schema, day = tenant_a.schema_name, datetime.now(UTC).strftime("%Y%m%d")
    client = redis_client()
    key = tpd_key(schema, day)
    client.set(epoch_key(schema), "e1")
    client.set(key, 100)  # the call's reservation
    request_id = f"req_{uuid.uuid4().hex}"
    record = records.CallRecord(
        tenant=tenant_a, request_id=request_id,
        usage=UsageCount(None, "claude-haiku-5-5", "anthropic", 20, 10, False, request_id=request_id,
                         charged_tokens=30),
        audit=AuditEvent(event_type="model_call", request_id=request_id),
        reservation=Reservation(tokens=100, day_keys=[key], schema=schema, epoch="e1", day=day),
        used_tokens=30, settle=True)
    with records._unsettled_lock:
        records._unsettled.append(record)  # committed; its settlement is owed
    own_redis.signal(signal.SIGSTOP)
    try:
        writer = threading.Thread(target=records.settle_pending)  # the writer thread's settlement
        writer.start()
        while True:  # until the writer thread has taken the record (its script is on its way to Redis)
            with records._unsettled_lock:
                if not records._unsettled:
                    break
            time.sleep(0.01)
        at_exit = records.settle_pending()  # BatchWriter.stop's, while the writer's is in flight
    finally:
        own_redis.signal(signal.SIGCONT)
    writer.join()
    assert at_exit is False  # not settled yet: the exit must keep trying, not leave
    assert records.settle_pending()
    assert int(client.get(key)) == 30

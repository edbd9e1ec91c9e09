"""The scheduled stale-reservation reaper: beat's task, run by a real Celery worker against the real Redis, gives
back every tenant's reservations whose TTL is over, without waiting for the tenant's next admission (an idle
tenant's counters are right too), and leaves the reservations still within their TTL alone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from access.quotas import (
    QUOTA,
    Limit,
    QuotaPlan,
    Reservation,
    epoch_key,
    pending_keys,
    quota_reservations_reap,
    tpd_key,
)
from config.redis import redis_client
from inference.admission import ADMISSION

DAY = "20991231"  # a day no other test reserves on: these counters are this module's alone


def reserve(schema: str, tokens: int, ttl_ms: int) -> Reservation:
    plan = QuotaPlan(schema=schema, day=DAY, tokens=tokens, tpd=[Limit(tpd_key(schema, DAY), 10_000, "tpd")],
                     ttl_ms=ttl_ms)
    return ADMISSION.run(QUOTA.bind(plan))[QUOTA]


def used(schema: str) -> int:
    return int(redis_client().get(tpd_key(schema, DAY)) or 0)


@pytest.fixture
def schemas(tenants: dict[str, Any]) -> Iterator[list[str]]:
    """alpha and beta (real tenants: the task walks the tenants table) with an epoch, and their members of the
    pending set and counters of DAY removed afterwards."""
    client = redis_client()
    names = [tenants["alpha"].schema_name, tenants["beta"].schema_name]
    made = [name for name in names if client.set(epoch_key(name), uuid.uuid4().hex, nx=True)]
    before = {name: set(client.zrange(pending_keys(name)[0], 0, -1)) for name in names}
    yield names
    for name in names:
        pending, data = pending_keys(name)
        for member in set(client.zrange(pending, 0, -1)) - before[name]:
            client.zrem(pending, member)
            client.hdel(data, member)
        client.delete(tpd_key(name, DAY))
    for name in made:
        client.delete(epoch_key(name))


@pytest.mark.slow
def test_beat_task_in_a_real_worker_releases_every_idle_tenants_stale_reservations(
        celery_worker_process: Any, committed: None, schemas: list[str]) -> None:
    from django.conf import settings
    from django.db import connection

    from access.tasks import quota_reservations_reap_all as task

    entry = settings.CELERY_BEAT_SCHEDULE["quota-reservation-reap"]
    assert entry["task"] == task.name and entry["tenant_schemas"] == ["public"]
    alpha, beta = schemas
    client = redis_client()
    live_b = reserve(beta, 200, ttl_ms=600_000)  # a call still running: its tokens stay held
    stale_a = reserve(alpha, 500, ttl_ms=1)  # last in each tenant: an admission reaps expired ones itself
    stale_b = reserve(beta, 300, ttl_ms=1)
    assert (used(alpha), used(beta)) == (500, 500)
    time.sleep(0.01)

    connection.set_schema_to_public()
    task.apply_async(queue=celery_worker_process.queue)  # as beat sends it; ignore_result: wait for the effect
    pending_b = pending_keys(beta)[0]
    deadline = time.monotonic() + 60  # a bound on waiting, not a performance limit
    while client.zscore(pending_b, stale_b.member) is not None and time.monotonic() < deadline:
        time.sleep(0.1)

    # No admission ran in either tenant since: the worker released both stale reservations.
    assert (used(alpha), used(beta)) == (0, 200)
    assert client.zscore(pending_keys(alpha)[0], stale_a.member) is None
    assert client.hget(pending_keys(alpha)[1], stale_a.member) is None
    assert client.zscore(pending_b, stale_b.member) is None
    assert client.zscore(pending_b, live_b.member) is not None


def test_reaping_walks_past_one_batch_and_gives_tokens_back_once(schemas: list[str]) -> None:
    alpha, _beta = schemas
    # TTLs that end a minute from now (an admission meanwhile would reap expired ones itself); reaped as of then.
    for _ in range(5):
        reserve(alpha, 100, ttl_ms=60_000)
    live = reserve(alpha, 40, ttl_ms=600_000)
    later = int(time.time() * 1000) + 120_000
    assert used(alpha) == 540
    assert quota_reservations_reap(schema=alpha, now_ms=later, batch=2) == 5  # three calls of at most two each
    assert used(alpha) == 40
    assert quota_reservations_reap(schema=alpha, now_ms=later, batch=2) == 0  # nothing is given back twice
    assert used(alpha) == 40 and redis_client().zscore(pending_keys(alpha)[0], live.member) is not None


def test_a_reservation_of_a_lost_epoch_leaves_without_touching_the_rebuilt_counters(schemas: list[str]) -> None:
    """After Redis lost the tenant's counters they were rebuilt from recorded usage (a new epoch), without the dead
    call's reservation: reaping it must not take its tokens off the rebuilt counters."""
    alpha, _beta = schemas
    client = redis_client()
    dead = reserve(alpha, 300, ttl_ms=60_000)
    client.set(epoch_key(alpha), uuid.uuid4().hex)  # the rebuild's new epoch
    client.set(tpd_key(alpha, DAY), 120)  # what the rebuild counted from recorded usage
    assert quota_reservations_reap(schema=alpha, now_ms=int(time.time() * 1000) + 120_000) == 1
    assert used(alpha) == 120
    pending, data = pending_keys(alpha)
    assert client.zscore(pending, dead.member) is None and client.hget(data, dead.member) is None

"""Quota state that outlives its process or its Redis: a reservation whose process was SIGKILLed before settling
gives its tokens back after its TTL (a real killed process), and the requests-per-minute windows are rebuilt
from the recorded calls when Redis comes back empty, as the token counters are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from access.errors import QuotaExceeded
from access.quotas import (
    QUOTA,
    Limit,
    QuotaPlan,
    epoch_key,
    pending_keys,
    quota_release,
    quota_settle_many,
    tenant_prefix,
    tpd_key,
)
from config.redis import redis_client
from inference.admission import ADMISSION
from tests.chat.conftest import body, post_messages
from tests.conftest import ROOT, subprocess_env

DAY = "20261206"

# What a web process does at admission, then it hangs (upstream, say) until it is killed.
_RESERVE_AND_HANG = """
import sys, time, django
django.setup()
from access.quotas import QUOTA, Limit, QuotaPlan, tpd_key
from inference.admission import ADMISSION
schema = sys.argv[1]
plan = QuotaPlan(schema=schema, day=sys.argv[2], tokens=500, tpd=[Limit(tpd_key(schema, sys.argv[2]), 1000, "t")],
                 ttl_ms=int(sys.argv[3]))
print("reserved", ADMISSION.run(QUOTA.bind(plan))[QUOTA].member, flush=True)
time.sleep(3600)
"""


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"reap_{uuid.uuid4().hex[:8]}"
    redis_client().set(epoch_key(name), "e1")
    yield name
    for key in redis_client().scan_iter(f"{tenant_prefix(name)}*"):
        redis_client().delete(key)


def plan(schema: str, tokens: int, ttl_ms: int = 60_000) -> QuotaPlan:
    return QuotaPlan(schema=schema, day=DAY, tokens=tokens, tpd=[Limit(tpd_key(schema, DAY), 1000, "tpd")],
                     ttl_ms=ttl_ms)


def test_the_reservation_of_a_killed_process_is_released_after_its_ttl(schema: str) -> None:
    env = subprocess_env()
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    proc = subprocess.Popen([sys.executable, "-c", _RESERVE_AND_HANG, schema, DAY, "1500"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("reserved "), line
        member = line.split()[1]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    client = redis_client()
    pending, _data = pending_keys(schema)
    assert int(client.get(tpd_key(schema, DAY))) == 500 and client.zscore(pending, member) is not None
    # Within its TTL the killed call's tokens still count (it might yet be settled by a journal replay).
    with pytest.raises(QuotaExceeded):
        ADMISSION.run(QUOTA.bind(plan(schema, 600)))
    refused = 1
    while True:  # once the TTL is over, the next admission reaps it first
        try:
            granted = ADMISSION.run(QUOTA.bind(plan(schema, 600)))[QUOTA]
            break
        except QuotaExceeded:
            refused += 1
            time.sleep(0.1)
    assert client.zscore(pending, member) is None
    assert int(client.get(tpd_key(schema, DAY))) == 600, "the killed call's 500 went back, the new 600 held"
    quota_settle_many([("req-new", granted, 120)])
    assert int(client.get(tpd_key(schema, DAY))) == 120 and client.zcard(pending) == 0
    print(f"\nrefused while the killed call's reservation was held: {refused}")


def test_a_reaped_call_settled_later_counts_what_it_used_once(schema: str) -> None:
    """The killed process's journal is replayed after the reaper released its reservation: the counters get the
    tokens it used (not used - reserved), exactly once."""
    client = redis_client()
    lost = ADMISSION.run(QUOTA.bind(plan(schema, 400, ttl_ms=1)))[QUOTA]
    time.sleep(0.01)
    kept = ADMISSION.run(QUOTA.bind(plan(schema, 100)))[QUOTA]  # reaps `lost` first
    assert int(client.get(tpd_key(schema, DAY))) == 100
    quota_settle_many([("req-lost", lost, 30), ("req-kept", kept, 60)])
    quota_settle_many([("req-lost", lost, 30), ("req-kept", kept, 60)])  # a replay: nothing changes
    assert int(client.get(tpd_key(schema, DAY))) == 30 + 60
    quota_release(lost)  # a release after the reap gives nothing back twice
    assert int(client.get(tpd_key(schema, DAY))) == 90


@pytest.fixture
def basic(tenant_a: Any, make_user: Any, api_key_for: Any) -> tuple[Any, str]:
    user = make_user(tenant_a, "basic_user")
    return user, api_key_for(tenant_a, user)


@pytest.mark.django_db
def test_request_windows_lost_with_redis_are_rebuilt_from_recorded_calls(sim: Any, client_a: Any, basic: Any,
                                                                          tenant_a: Any, tenant_update: Any) -> None:
    tenant_update(tenant_a, requests_per_minute=3, tokens_per_day=None)
    for _ in range(3):
        assert post_messages(client_a, basic[1], body()).status_code == 200
    assert post_messages(client_a, basic[1], body()).status_code == 429
    for key in redis_client().scan_iter(f"{tenant_prefix(tenant_a.schema_name)}*"):  # Redis restarted empty
        redis_client().delete(key)
    refused = post_messages(client_a, basic[1], body())  # admission rebuilds the window first
    assert refused.status_code == 429, "Redis' restart handed out a second minute's requests"
    assert redis_client().zcard(f"{tenant_prefix(tenant_a.schema_name)}rpm") == 3
    assert redis_client().get(epoch_key(tenant_a.schema_name)) is not None

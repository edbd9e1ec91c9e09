"""The multi-instance topology (config/cluster.py): HAProxy in front of three gunicorn instances, PgBouncer in
transaction pooling in front of PostgreSQL, two Celery workers, one beat and a Redis of this suite's own.

What one process cannot show: limits, revocations, role changes and breakers agree across instances; one beat
sends periodic tasks even when a second is started; a killed worker's GDPR job finishes on the other worker; a
killed web instance loses no call record; and tenants stay apart on pooled server connections.
"""

from __future__ import annotations

import json
import re
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from config.cluster import Cluster, Proc, cluster, wait_log
from inference.breaker import breaker_key
from inference.simulator import Simulator
from tests.chat.conftest import QUOTA_TENANT, web_env
from tests.conftest import hosts_resolve

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture(scope="module")
def box(simulator: Simulator, tenants: dict[str, Any], django_db_blocker: Any) -> Iterator[Cluster]:
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    with django_db_blocker.unblock():
        if not Tenant.objects.filter(schema_name=QUOTA_TENANT).exists():
            tenant_provision(slug=QUOTA_TENANT, name="Gamma")
    hosts_resolve("alpha.localhost", "beta.localhost", f"{QUOTA_TENANT}.localhost")
    env = web_env(simulator, ATRIUM_BEAT_HEARTBEAT_S="1", ATRIUM_BEAT_LOCK_TTL_S="3", ATRIUM_GDPR_LEASE_S="2",
                  ATRIUM_GDPR_BATCH="20", ATRIUM_GDPR_BATCH_PAUSE_MS="60", ATRIUM_BREAKER_COOLDOWN_S="600",
                  ATRIUM_AUTH_CACHE_S="300")  # long: a change must reach the instances by NOTIFY, not by expiry
    env.pop("PROMETHEUS_MULTIPROC_DIR")  # one directory per instance (Cluster.start_web)
    workdir = Path(tempfile.mkdtemp(prefix="atrium-cluster-test-"))
    with cluster(database_url=env["DATABASE_URL"], base_env=env, workdir=workdir, pool_size=4) as topology:
        yield topology


@pytest.fixture(scope="module")
def cluster_redis(box: Cluster) -> Any:
    import redis

    return redis.Redis(port=box.redis_port)


@pytest.fixture
def fresh(box: Cluster, cluster_redis: Any, simulator: Simulator) -> Iterator[None]:
    def reset() -> None:
        simulator.faults.clear()
        simulator.reset_requests()
        for pattern in ("atrium:quota:*", "atrium:breaker:*"):
            for key in cluster_redis.scan_iter(pattern):
                cluster_redis.delete(key)

    reset()
    yield
    reset()


def webs(box: Cluster) -> list[Proc]:
    return [p for name, p in box.procs.items() if re.fullmatch(r"web\d+", name) and p.alive()]


def call(port: int, host: str, key: str, *, path: str = "/v1/messages", body: dict[str, Any] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request, a fresh connection each time (so HAProxy balances every request)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET",
                                     headers={"Host": host, "x-api-key": key, "content-type": "application/json",
                                              "anthropic-version": "2023-06-01", "Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def message(text: str = "Hello", model: str = "claude-haiku-5-5", max_tokens: int = 16) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}


def eventually(check: Callable[[], bool], what: str, attempts: int = 600, pause: float = 0.05) -> None:
    for _ in range(attempts):
        if check():
            return
        time.sleep(pause)
    raise AssertionError(f"never: {what}")


def served_by(proc: Proc, marker: str) -> int:
    return proc.log.read_text(errors="replace").count(marker)


def test_topology_is_up(box: Cluster) -> None:
    assert len(webs(box)) == 3
    assert {"haproxy", "pgbouncer", "redis", "worker1", "worker2", "beat1"} <= set(box.procs)
    assert "DATABASE_POOL_MODE" in box.env and box.env["DATABASE_URL"].endswith(
        f":{box.pgbouncer_port}/{box.env['ATRIUM_CACHE_LISTEN_URL'].rsplit('/', 1)[1]}")
    status, body, _ = call(box.haproxy_port, "localhost", "", path="/readyz")
    assert status == 200 and body["status"] == "ok", body


def test_a_burst_over_every_instance_gets_exactly_the_limit(box: Cluster, fresh: None, committed_user: Any,
                                                            quota_policy: Any) -> None:
    # A per-user limit on a new user: `fresh` empties Redis, so the windows are rebuilt from the calls recorded in
    # the last minute, and a tenant-wide window would count the calls earlier tests made in gamma (rightly: a Redis
    # restart hands out no second minute). The new user's window starts empty wherever this test runs.
    quota_policy(requests_per_minute=None, tokens_per_day=None, user_requests_per_minute=15,
                 user_tokens_per_day=None)
    _user, key = committed_user(QUOTA_TENANT, "power_user")
    before = {p.name: served_by(p, "/v1/messages") for p in webs(box)}
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda n: call(box.haproxy_port, f"{QUOTA_TENANT}.localhost", key,
                                               body=message(f"burst {n}")), range(45)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) == 15, statuses
    assert statuses.count(429) == 30, statuses
    # Each call's access line reaches its instance's log up to ATRIUM_WEB_ACCESS_LOG_FLUSH_S (0.25 s) after the
    # answer (config/access_log.py): wait until all 45 are there before reading the spread.
    give_up = time.monotonic() + 30
    while True:
        spread = {p.name: served_by(p, "/v1/messages") - before[p.name] for p in webs(box)}
        if sum(spread.values()) >= len(results) or time.monotonic() > give_up:
            break
        time.sleep(0.05)
    assert sum(spread.values()) == len(results), spread
    assert all(count > 0 for count in spread.values()), f"HAProxy spread the burst over every instance: {spread}"


def test_a_revoked_key_is_refused_by_every_instance(box: Cluster, fresh: None, committed_user: Any) -> None:
    """Each instance caches the key (for 300 s here); the revocation's commit empties every cache (NOTIFY through
    the listener, which bypasses PgBouncer). Every instance is probed at once from the commit on until both of its
    workers refuse. Issue 19 asks for 100 ms: that is measured and printed (3 ms on an idle machine), not asserted
    (no wall-clock limits in tests); what is asserted is that no instance accepts the key 30 s after the commit, a
    tenth of the cache's lifetime, which only the notification can achieve."""
    from django_tenants.utils import schema_context

    from access.models import ApiKey
    from access.services import api_key_revoke

    user, key = committed_user("alpha")
    instances = webs(box)
    for proc in instances:
        for _ in range(4):  # both gunicorn workers of each instance
            assert call(proc.port or 0, "alpha.localhost", key, path="/v1/models")[0] == 200
    probes: dict[str, list[tuple[float, int]]] = {p.name: [] for p in instances}
    committed = threading.Event()
    committed_at: list[float] = []

    def probe(proc: Proc) -> None:
        committed.wait()
        refusals = 0
        while refusals < 4:  # four refusals in a row: both workers of the instance refuse
            sent = time.perf_counter() - committed_at[0]
            status, body, _ = call(proc.port or 0, "alpha.localhost", key, path="/v1/models")
            probes[proc.name].append((sent, status))
            if status == 200:
                refusals = 0
                assert sent < 30, f"{proc.name} still accepts the revoked key: the notification never arrived"
                continue
            assert status == 401 and "revoked" in body["error"]["message"], body
            refusals += 1

    threads = [threading.Thread(target=probe, args=(proc,)) for proc in instances]
    for thread in threads:
        thread.start()
    with schema_context("alpha"):
        api_key_revoke(api_key=ApiKey.objects.get(user=user), revoked_by=user)
    committed_at.append(time.perf_counter())
    committed.set()
    for thread in threads:
        thread.join()
    last_accept = {name: max([sent for sent, status in calls if status == 200], default=None)
                   for name, calls in probes.items()}
    first_refusal = {name: min(sent for sent, status in calls if status != 200) for name, calls in probes.items()}
    print(f"\nrevoked key (target: refused everywhere within 100 ms): last accepted request sent at (s after "
          f"commit) {last_accept}; first refusal {first_refusal}")


def test_a_role_change_applies_on_every_instance(box: Cluster, fresh: None, committed_user: Any) -> None:
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    user, key = committed_user("alpha", "power_user")
    opus = message("big", model="claude-opus-5-5")
    for proc in webs(box):
        assert call(proc.port or 0, "alpha.localhost", key, body=opus)[0] == 200
    with schema_context("alpha"):
        user.groups.set([Group.objects.get(name="basic_user")])  # basic_user may not use opus

    def refused_everywhere() -> bool:
        return all(call(p.port or 0, "alpha.localhost", key, body=opus)[0] == 403 for p in webs(box) for _ in (1, 2))

    eventually(refused_everywhere, "every instance applies the new role")


def test_a_breaker_opened_through_one_instance_is_open_on_all(box: Cluster, fresh: None, simulator: Simulator,
                                                              committed_user: Any, cluster_redis: Any) -> None:
    _user, key = committed_user("alpha")
    simulator.faults.set("anthropic", "", status=529)
    first, *others = webs(box)
    for n in range(3):  # ATRIUM_BREAKER_FAILURES: three failures in a row open it
        status, _body, _ = call(first.port or 0, "alpha.localhost", key, body=message(f"fail over {n}"))
        assert status == 200, "the router failed over to the next provider"
    assert cluster_redis.hget(breaker_key("anthropic"), "state") == b"open"
    tried = len(simulator.requests("anthropic"))
    for proc in others:
        status, _body, _ = call(proc.port or 0, "alpha.localhost", key, body=message("skip"))
        assert status == 200
    assert len(simulator.requests("anthropic")) == tried, "the other instances skipped the open provider"


def test_one_beat_sends_a_second_waits_then_takes_over(box: Cluster, cluster_redis: Any) -> None:
    first = box.procs["beat1"]
    wait_log(first, b"beat lock acquired")
    second = box.start_beat("beat2")
    try:
        wait_log(second, b"standing by")
        sent_marker = b"Sending due task beat-heartbeat"
        runs_before = int(cluster_redis.hget("atrium:beat:heartbeat", "runs") or 0)
        sent_before = first.log.read_bytes().count(sent_marker)
        eventually(lambda: int(cluster_redis.hget("atrium:beat:heartbeat", "runs") or 0) >= runs_before + 6,
                   "six heartbeats (every 1 s) run by the workers")
        time.sleep(1.5)  # let the last sent heartbeat run
        runs = int(cluster_redis.hget("atrium:beat:heartbeat", "runs") or 0) - runs_before
        sent = first.log.read_bytes().count(sent_marker) - sent_before
        assert second.log.read_bytes().count(sent_marker) == 0, "the second beat sent nothing while the first lived"
        assert runs in (sent, sent + 1), (runs, sent)  # each heartbeat ran once (one may be in flight at the start)

        first.kill()
        wait_log(second, b"beat lock acquired")
        eventually(lambda: second.log.read_bytes().count(sent_marker) >= 2, "the second beat took over")
        holder = cluster_redis.get("atrium:beat:lock").decode()
        assert holder.split(":")[1] == str(second.popen.pid)
    finally:
        second.stop()
        if not first.alive():
            box.start_beat("beat1")


def manage_in(box: Cluster, code: str) -> str:
    """Run ORM code as the cluster's processes do (through PgBouncer, the cluster's Redis and broker)."""
    import subprocess
    import sys

    from config.cluster import ROOT

    proc = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=box.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def test_a_gdpr_job_of_a_killed_worker_is_finished_by_the_other(box: Cluster, tenants: dict[str, Any],
                                                                 committed: None) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import tenant_context

    from audit.models import GdprJob
    from inference.models import Conversation

    total = 2000  # 100 batches of 20: still running when the worker is stopped
    tenant = tenants["alpha"]
    with tenant_context(tenant):
        name = f"leaving-{uuid.uuid4().hex[:6]}"
        user = get_user_model().objects.create_user(username=name, email=f"{name}@example.com")
        user.groups.add(Group.objects.get(name="basic_user"))
        Conversation.objects.bulk_create([Conversation(user=user, model="claude-haiku-5-5", title=f"{name} {i}")
                                          for i in range(total)])
        officer = get_user_model().objects.create_user(username=f"officer-{name}")
        officer.groups.add(Group.objects.get(name="compliance_officer"))
    job_id = manage_in(box, (
        "from django_tenants.utils import schema_context\n"
        "from django.contrib.auth import get_user_model\n"
        "from audit.gdpr import gdpr_request\n"
        "with schema_context('alpha'):\n"
        f"    u = get_user_model().objects.get(pk={user.pk}); o = get_user_model().objects.get(pk={officer.pk})\n"
        "    print(gdpr_request(kind='deletion', subject=u, requested_by=o).id)\n"))

    def job() -> Any:
        with tenant_context(tenant):
            return GdprJob.objects.get(pk=job_id)

    eventually(lambda: job().counts.get("conversations", 0) >= 40, "the deletion is under way", attempts=1200)
    marker = b"audit.tasks.gdpr_run["
    running = [p for p in (box.procs["worker1"], box.procs["worker2"]) if marker in p.log.read_bytes()]
    assert len(running) == 1, "one worker received the job"
    victim = running[0]
    survivor = box.procs["worker2" if victim.name == "worker1" else "worker1"]
    assert marker not in survivor.log.read_bytes()
    victim.signal(signal.SIGSTOP)  # frozen where it is: the job is seen mid-way however loaded the machine is
    assert job().status == "running" and job().counts["conversations"] < total, "killed mid-job"
    victim.kill()

    def finished() -> bool:
        manage_in(box, "from audit.tasks import gdpr_recover; gdpr_recover.delay()")  # what beat does every minute
        return job().status == "done"

    try:
        eventually(finished, "the other worker finished the job", attempts=60, pause=1.0)
        done = job()
        assert done.counts["conversations"] == total and done.attempts >= 2
        assert marker in survivor.log.read_bytes(), "the surviving worker ran it"
        with tenant_context(tenant):
            assert not Conversation.objects.filter(user_id=user.pk).exists()
    finally:
        box.start_worker(victim.name)


def test_tenants_stay_apart_on_pooled_connections(box: Cluster, fresh: None, committed_user: Any) -> None:
    """PgBouncer has four server connections for all of them: concurrent calls of two tenants interleave on
    the same server connections, and each must still read its own schema (config/db/base.py)."""
    _ua, key_a = committed_user("alpha")
    _ub, key_b = committed_user("beta")
    with ThreadPoolExecutor(max_workers=16) as pool:
        jobs = [(host, key) for _ in range(20) for host, key in (("alpha.localhost", key_a), ("beta.localhost", key_b))]
        results = list(pool.map(lambda hk: call(box.haproxy_port, hk[0], hk[1], path="/v1/models"), jobs))
    # A key is looked up in the schema of the request's host: a search_path from the other tenant's statement
    # would make the key unknown (401).
    assert [status for status, _, _ in results] == [200] * len(jobs)


def test_a_killed_web_instance_loses_no_call_record(box: Cluster, fresh: None, committed_user: Any) -> None:
    """Every call answered 200 by an instance that is then SIGKILLed has exactly one audit entry and one usage row
    (matched by its request id), once the instance is back (a record it had journaled is replayed at start)."""
    from django_tenants.utils import schema_context

    from audit.models import AuditEntry
    from inference.models import UsageRecord

    _user, key = committed_user("alpha")
    victim = webs(box)[-1]
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        n = 0
        while not stop.is_set() and n < 40:
            n += 1
            try:
                status, _body, headers = call(victim.port or 0, "alpha.localhost", key, body=message(f"kill {n}"),
                                              timeout=10)
            except OSError:  # the instance died under this call
                continue
            if status == 200:
                answered.append({k.lower(): v for k, v in headers.items()}["request-id"])

    thread = threading.Thread(target=client)
    thread.start()
    eventually(lambda: len(answered) >= 10, "ten answered calls")
    victim.kill()
    stop.set()
    thread.join(timeout=30)
    box.start_web(victim.name)

    def recorded() -> tuple[int, int]:
        with schema_context("alpha"):
            return (AuditEntry.objects.filter(event_type="model_call", request_id__in=answered).count(),
                    UsageRecord.objects.filter(request_id__in=answered).count())

    eventually(lambda: recorded() == (len(answered), len(answered)), "every answered call recorded once",
               attempts=600)

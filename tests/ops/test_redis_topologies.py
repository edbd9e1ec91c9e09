"""Redis beyond one node, for real: a Redis Cluster of three masters (redis-server --cluster-enabled, joined by
`redis-cli --cluster create`) running the quota and breaker scripts, and a Sentinel in front of a master and its
replica, through which the app (quotas, breakers, Celery's broker and result backend) finds the master, also
after a failover. Ports 9601-9603 (cluster) and 9611-9613 (sentinel) are this suite's own."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from access.errors import QuotaExceeded
from access.quotas import (
    QUOTA,
    Limit,
    QuotaPlan,
    Reservation,
    epoch_key,
    quota_rebuild,
    quota_release,
    quota_settle_many,
    tenant_prefix,
    tpd_key,
)
from config.redis import redis_client, redis_is_cluster, redis_reset
from config.redis_urls import celery_sentinel, parse_multi_node
from inference.admission import ADMISSION
from inference.breaker import (
    BREAKERS,
    BreakerCheck,
    breaker_key,
    breaker_record_failure,
    breaker_record_success,
    breaker_reset,
    breaker_state,
)
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.slow

CLUSTER_PORTS = (9601, 9602, 9603)
MASTER_PORT, REPLICA_PORT, SENTINEL_PORT = 9611, 9612, 9613
DAY = "20261206"


def _binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed"
    return path


def _wait(check: Callable[[], bool], what: str, attempts: int = 400) -> None:
    for _ in range(attempts):
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


class Servers:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="atrium-redis-topology-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, port: int, *extra: str, sentinel: bool = False) -> subprocess.Popen[bytes]:
        workdir = self.dir / str(port)
        workdir.mkdir()
        args = [_binary("redis-server")]
        if sentinel:
            config = workdir / "sentinel.conf"
            config.write_text("\n".join(extra) + "\n")
            args += [str(config), "--sentinel"]
            extra = ()
        args += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
                 "--appendonly", "no", *extra]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        _wait(lambda: bool(redis.Redis(port=port).ping()), f"redis on {port}")
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[str]:
    servers = Servers()
    try:
        for port in CLUSTER_PORTS:
            servers.start(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "2000")
        subprocess.run([_binary("redis-cli"), "--cluster", "create",
                        *[f"127.0.0.1:{port}" for port in CLUSTER_PORTS], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in CLUSTER_PORTS:
            _wait(lambda port=port: b"cluster_state:ok" in redis.Redis(port=port).execute_command(
                "CLUSTER", "INFO"), f"cluster state ok on {port}")
        yield ",".join(f"127.0.0.1:{port}" for port in CLUSTER_PORTS)
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def redis_sentinel() -> Iterator[Servers]:
    servers = Servers()
    try:
        servers.start(MASTER_PORT)
        servers.start(REPLICA_PORT, "--replicaof", "127.0.0.1", str(MASTER_PORT))
        _wait(lambda: redis.Redis(port=REPLICA_PORT).info("replication")["master_link_status"] == "up",
              "the replica is in sync")
        servers.start(SENTINEL_PORT, f"port {SENTINEL_PORT}", "bind 127.0.0.1",
                      f"sentinel monitor atrium 127.0.0.1 {MASTER_PORT} 1",
                      "sentinel down-after-milliseconds atrium 2000", "sentinel failover-timeout atrium 10000",
                      sentinel=True)
        sentinel = redis.Redis(port=SENTINEL_PORT)
        _wait(lambda: len(sentinel.sentinel_slaves("atrium")) == 1, "the sentinel knows the replica")
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def use_redis(settings: Any) -> Iterator[Callable[[str], None]]:
    """Point the process's Redis client (quotas, breakers, everything through config.redis) at a URL."""
    def use(url: str) -> None:
        settings.REDIS_URL = url
        redis_reset()

    yield use
    redis_reset()


def tenants_on_different_nodes(count: int = 3) -> list[str]:
    """Tenant schema names whose quota keys hash to different masters of the cluster."""
    client: Any = redis_client()
    names: dict[str, str] = {}
    for n in range(200):
        schema = f"t{n}_{uuid.uuid4().hex[:4]}"
        node = client.get_node_from_key(epoch_key(schema)).name
        names.setdefault(node, schema)
        if len(names) == count:
            break
    return list(names.values())


def plan(schema: str, *, tokens: int, rpm: int | None = None, tpd: int | None = None) -> QuotaPlan:
    return QuotaPlan(schema=schema, day=DAY, tokens=tokens,
                     rpm=[Limit(f"{tenant_prefix(schema)}rpm", rpm, "rpm")] if rpm is not None else [],
                     tpd=[Limit(tpd_key(schema, DAY), tpd, "tpd")] if tpd is not None else [])


def test_urls_name_the_topology() -> None:
    sentinel = parse_multi_node("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/atrium/2?sentinel_password=x")
    assert sentinel is not None and sentinel.hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert (sentinel.service, sentinel.db, sentinel.password, sentinel.options) == ("atrium", 2, "s3cret",
                                                                                   {"sentinel_password": "x"})
    assert parse_multi_node("redis://127.0.0.1:6379/0") is None
    with pytest.raises(ValueError, match="name the master"):
        parse_multi_node("redis+sentinel://10.0.0.1:26379")
    with pytest.raises(ValueError, match="no databases"):
        parse_multi_node("redis+cluster://10.0.0.1:7000/3")
    broker = celery_sentinel("redis+sentinel://:pw@h1:26379,h2:26380/atrium/1")
    assert broker == ("sentinel://:pw@h1:26379/1;sentinel://:pw@h2:26380/1", {"master_name": "atrium"})


def test_quota_and_breaker_scripts_run_on_a_redis_cluster(redis_cluster: str, use_redis: Any) -> None:
    use_redis(f"redis+cluster://{redis_cluster}")
    assert redis_is_cluster()
    tenants = tenants_on_different_nodes()
    assert len(tenants) == 3, "the tenants' hash tags spread over the three masters"
    client: Any = redis_client()
    targets = [("anthropic", f"topo-{uuid.uuid4().hex[:6]}"), ("bedrock", f"topo-{uuid.uuid4().hex[:6]}")]
    breaker_record_failure(targets[0][1], reason="test", force_open=True)
    client.hset(breaker_key(targets[0][1]), "open_until", time.time() - 1)  # the probe is due
    reservations: dict[str, Reservation] = {}
    for schema in tenants:
        client.set(epoch_key(schema), "e1")
        answer = ADMISSION.run(QUOTA.bind(plan(schema, tokens=100, rpm=10, tpd=1000)),
                               BREAKERS.bind(BreakerCheck(targets=targets)))
        reservations[schema] = answer[QUOTA]
        assert reservations[schema].epoch == "e1"
        assert int(client.get(tpd_key(schema, DAY))) == 100
    # The first admission took the half-open probe; the later ones skipped it and reached the next breaker.
    assert breaker_state(targets[0][1]).state == "half_open"
    codes = ADMISSION.run(QUOTA.bind(plan(tenants[0], tokens=1)), BREAKERS.bind(BreakerCheck(targets=targets)))
    assert codes[BREAKERS] == {"anthropic": 0, "bedrock": 1}
    # Settlement of calls of every tenant in one go (one script call per tenant on a cluster), exactly once.
    settlements = [(f"req-{schema}", reservations[schema], 40) for schema in tenants]
    quota_settle_many(settlements)
    quota_settle_many(settlements)
    assert [int(client.get(tpd_key(schema, DAY))) for schema in tenants] == [40, 40, 40]
    # A refused call's release, and a rebuild after the tenant's keys were lost.
    spare = ADMISSION.run(QUOTA.bind(plan(tenants[1], tokens=500, tpd=1000)))[QUOTA]
    quota_release(spare)
    assert int(client.get(tpd_key(tenants[1], DAY))) == 40
    with pytest.raises(QuotaExceeded):
        ADMISSION.run(QUOTA.bind(plan(tenants[2], tokens=961, tpd=1000)))

    class Tenant:
        schema_name = tenants[2]
        tokens_per_day = 1000
        effective_user_tokens_per_day = None

    for key in client.scan_iter(f"{tenant_prefix(tenants[2])}*"):
        client.delete(key)
    assert quota_rebuild(tenant=Tenant(), recorded=lambda day: iter([("r1", None, 70), ("r2", None, 5)]))
    from datetime import UTC, datetime

    assert int(client.get(tpd_key(tenants[2], datetime.now(UTC).strftime("%Y%m%d")))) == 75
    breaker_record_success(targets[0][1])
    assert breaker_state(targets[0][1]).state == "closed"
    breaker_reset()
    assert list(client.scan_iter("atrium:breaker:*")) == []


def test_a_burst_on_a_cluster_gets_exactly_the_limit(redis_cluster: str, use_redis: Any) -> None:
    use_redis(f"redis+cluster://{redis_cluster}")
    schema = f"burst_{uuid.uuid4().hex[:6]}"
    redis_client().set(epoch_key(schema), "e1")
    granted: list[int] = []
    refused: list[int] = []

    def one(n: int) -> None:
        try:
            ADMISSION.run(QUOTA.bind(plan(schema, tokens=10, rpm=25, tpd=10_000)))
            granted.append(n)
        except QuotaExceeded:
            refused.append(n)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(granted), len(refused)) == (25, 35)
    assert int(redis_client().get(tpd_key(schema, DAY))) == 250


@pytest.fixture
def basic(tenant_a: Any, make_user: Any, api_key_for: Any) -> tuple[Any, str]:
    user = make_user(tenant_a, "basic_user")
    return user, api_key_for(tenant_a, user)


def test_a_v1_call_is_admitted_and_settled_on_a_cluster(redis_cluster: str, use_redis: Any, sim: Any,
                                                        client_a: Any, basic: Any, tenant_a: Any) -> None:
    """The whole gateway (admission, router with its breakers, records, settlement) over the cluster."""
    from access.quotas import quota_tokens_used_today

    use_redis(f"redis+cluster://{redis_cluster}")
    redis_client().set(epoch_key(tenant_a.schema_name), uuid.uuid4().hex)
    before = quota_tokens_used_today(tenant=tenant_a)
    breaker_record_failure("anthropic", reason="test", force_open=True)
    response = post_messages(client_a, basic[1], body())
    assert response.status_code == 200, response.content
    usage = response.json()["usage"]
    assert sim.requests("anthropic") == [] and len(sim.requests("bedrock")) == 1
    if tenant_a.tokens_per_day is not None:
        _wait(lambda: quota_tokens_used_today(tenant=tenant_a) - before ==
              usage["input_tokens"] + usage["output_tokens"], "the call settled on the cluster")
    breaker_reset()


def test_the_app_finds_the_master_through_sentinel_also_after_a_failover(redis_sentinel: Servers,
                                                                          use_redis: Any) -> None:
    use_redis(f"redis+sentinel://127.0.0.1:{SENTINEL_PORT}/atrium/0")
    assert not redis_is_cluster()
    schema = f"sent_{uuid.uuid4().hex[:6]}"
    redis_client().set(epoch_key(schema), "e1")
    ADMISSION.run(QUOTA.bind(plan(schema, tokens=7, tpd=100)))
    master = redis.Redis(port=MASTER_PORT)
    assert int(master.get(tpd_key(schema, DAY))) == 7, "the reservation landed on the master"
    assert master.wait(1, 5000) == 1  # the replica has it too

    def failover() -> bool:  # refused (NOGOODSLAVE) until the sentinel has fresh news of the replica
        try:
            redis.Redis(port=SENTINEL_PORT).execute_command("SENTINEL", "FAILOVER", "atrium")
        except redis.ResponseError:
            return False
        return True

    _wait(failover, "the sentinel accepted the failover")
    _wait(lambda: redis.Redis(port=SENTINEL_PORT).sentinel_get_master_addr_by_name("atrium")[1] == REPLICA_PORT,
          "the sentinel promoted the replica")
    _wait(lambda: redis.Redis(port=REPLICA_PORT).info("replication")["role"] == "master", "promoted")
    # Until the sentinel has turned the old master into a replica it still takes writes from connections opened
    # before (Sentinel's known window, docs/deployment.md); from then on they are refused and the client asks the
    # sentinel again.
    _wait(lambda: redis.Redis(port=MASTER_PORT).info("replication")["role"] == "slave", "the old master demoted")

    def admitted() -> bool:
        try:
            ADMISSION.run(QUOTA.bind(plan(schema, tokens=5, tpd=100)))
        except (redis.ConnectionError, redis.ReadOnlyError):
            return False  # the call in flight at the failover fails (a 503 for its caller); the next one works
        return True

    _wait(admitted, "an admission on the new master")
    assert int(redis.Redis(port=REPLICA_PORT).get(tpd_key(schema, DAY))) == 12, "the new master counts on"
    assert breaker_record_failure(f"sent-{schema}", reason="x", force_open=True) == "open"
    assert redis.Redis(port=REPLICA_PORT).hget(breaker_key(f"sent-{schema}"), "state") == b"open"


def test_celery_broker_and_results_through_sentinel(redis_sentinel: Servers,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The same URL in CELERY_BROKER_URL and CELERY_RESULT_BACKEND as in REDIS_URL (Celery reads them from the
    environment first)."""
    from celery import Celery

    from config.celery import sentinel_configure

    url = f"redis+sentinel://127.0.0.1:{SENTINEL_PORT}/atrium/3"
    # Celery's properties read the process environment first: this test's apps get theirs through `environ`, and
    # the process's own CELERY_* variables are out of the way (never the sentinel's: other tests' app reads them).
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    environ = {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    app = Celery("atrium-sentinel-test", broker=url, backend=url, set_as_current=False)
    sentinel_configure(app.conf, environ)
    assert app.conf.broker_url == f"sentinel://127.0.0.1:{SENTINEL_PORT}/3"
    assert app.conf.broker_transport_options["master_name"] == "atrium"
    assert environ["CELERY_BROKER_URL"] == app.conf.broker_url  # what a child process inherits
    inherited = Celery("a-process-that-inherited-the-environment", set_as_current=False)
    sentinel_configure(inherited.conf, environ)
    assert inherited.conf.result_backend_transport_options["master_name"] == "atrium"
    master_port = int(redis.Redis(port=SENTINEL_PORT).sentinel_get_master_addr_by_name("atrium")[1])
    queue_name = f"atrium-test-{uuid.uuid4().hex[:6]}"
    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue(queue_name)
        queue.put({"hello": "sentinel"})
        assert redis.Redis(port=master_port, db=3).llen(queue_name) == 1, "the message is on the master"
        message = queue.get(timeout=10)
        assert message.payload == {"hello": "sentinel"}
        message.ack()
        queue.close()
    task_id = uuid.uuid4().hex
    app.backend.store_result(task_id, {"answer": 42}, "SUCCESS")
    assert app.AsyncResult(task_id).result == {"answer": 42}
    assert redis.Redis(port=master_port, db=3).exists(f"celery-task-meta-{task_id}")

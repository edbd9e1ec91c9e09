"""Faults under load against a real gunicorn, PostgreSQL and Redis: every 200 a client received has exactly one
audit entry and one usage count (matched by request id), and the Redis token counters equal recorded usage.

The Redis here is this test's own redis-server on a free port (the machine's Redis is shared): it is stopped
(SIGSTOP) and killed. PostgreSQL is cut for this test's database only (ALLOW_CONNECTIONS false and the app's
backends terminated), never stopped. Tenant alpha fails closed; tenant beta serves and journals.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference.record_journal import journal_records
from inference.simulator import Simulator
from tests.chat.conftest import web_env
from tests.conftest import WebServer, free_port, hosts_resolve

pytestmark = pytest.mark.slow

TENANTS = ("alpha", "beta")


class OwnRedis:
    """A redis-server of this test's own, without persistence (a restart comes back empty)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis.from_url(self.url).ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Outcome:
    tenant: str
    status: int
    request_id: str
    complete: bool = True  # a stream that reached message_stop


@dataclass
class Load:
    keys: dict[str, str]
    url: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, tenant: str, stream: bool) -> None:
        payload = {"model": "claude-haiku-5-5", "max_tokens": 16, "stream": stream,
                   "messages": [{"role": "user", "content": "fault test"}]}
        with httpx.Client(timeout=20) as client:
            while not self.stop.is_set():
                try:
                    outcome = self._one(client, tenant, payload)
                except httpx.HTTPError:
                    time.sleep(0.1)  # the server is down (killed, restarting)
                    continue
                with self.lock:
                    self.outcomes.append(outcome)
                if outcome.status != 200:
                    time.sleep(0.05)

    def _one(self, client: httpx.Client, tenant: str, payload: dict[str, Any]) -> Outcome:
        url = f"{self.url['base'].replace('HOST', f'{tenant}.localhost')}/v1/messages"
        headers = {"x-api-key": self.keys[tenant]}
        if not payload["stream"]:
            response = client.post(url, json=payload, headers=headers)
            return Outcome(tenant, response.status_code, response.headers.get("request-id", ""))
        with client.stream("POST", url, json=payload, headers=headers) as response:
            text = "".join(response.iter_text())
            return Outcome(tenant, response.status_code, response.headers.get("request-id", ""),
                           complete="event: message_stop" in text and "event: error" not in text)


def _server(env: dict[str, str], port: int, logs: list[Path]) -> WebServer:
    server = WebServer(env, workers=2)
    server.port = port
    server.log = Path(tempfile.gettempdir()) / f"atrium-faults-{port}-{len(logs)}.log"
    logs.append(server.log)
    return server.start()


def _kill(server: WebServer) -> None:
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)


@contextlib.contextmanager
def _maintenance() -> Iterator[Any]:
    """A connection to the server's maintenance database, outside the test database."""
    import psycopg
    from django.db import connection

    db = connection.settings_dict
    conn = psycopg.connect(host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432,
                           user=db.get("USER") or "postgres", password=db.get("PASSWORD") or None,
                           dbname="postgres", autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def _postgres_cut(seconds: float) -> None:
    """The app cannot reach its database for `seconds`: new connections refused, existing ones terminated."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        mine = cursor.fetchone()[0]
    with _maintenance() as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                          [name, mine])
            time.sleep(seconds)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def _audit_inserts_fail(schema: str, seconds: float) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE OR REPLACE FUNCTION {schema}.fault_insert() RETURNS trigger LANGUAGE plpgsql AS "
                       "$$ BEGIN RAISE EXCEPTION 'fault test: audit inserts fail'; END $$")
        cursor.execute(f"CREATE TRIGGER fault_insert BEFORE INSERT ON {schema}.audit_auditentry "
                       f"FOR EACH ROW EXECUTE FUNCTION {schema}.fault_insert()")
    try:
        time.sleep(seconds)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER fault_insert ON {schema}.audit_auditentry")
            cursor.execute(f"DROP FUNCTION {schema}.fault_insert()")


def _audit_locked_then_killed(server: WebServer, seconds: float) -> None:
    """Both tenants' audit tables locked; while the writers wait on the lock, the web processes are killed."""
    import psycopg
    from django.db import connection

    db = connection.settings_dict
    with psycopg.connect(host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432,
                         user=db.get("USER") or "postgres", dbname=db["NAME"]) as locker:
        locker.execute("LOCK TABLE alpha.audit_auditentry, beta.audit_auditentry IN ACCESS EXCLUSIVE MODE")
        time.sleep(seconds)
        _kill(server)
        locker.rollback()


@pytest.fixture
def fault_policy(committed: None) -> Iterator[None]:
    from tenants.models import Tenant

    fields = ("requests_per_minute", "tokens_per_day", "user_requests_per_minute", "user_tokens_per_day",
              "record_policy")
    original = {t.schema_name: {f: getattr(t, f) for f in fields} for t in Tenant.objects.filter(
        schema_name__in=TENANTS)}
    Tenant.objects.filter(schema_name__in=TENANTS).update(requests_per_minute=None, user_requests_per_minute=None,
                                                          tokens_per_day=1_000_000_000, user_tokens_per_day=None)
    Tenant.objects.filter(schema_name="beta").update(record_policy="serve_and_journal")
    yield
    for schema, values in original.items():
        Tenant.objects.filter(schema_name=schema).update(**values)


def test_every_200_is_recorded_exactly_once_through_faults(simulator: Simulator, committed_user: Any,
                                                           fault_policy: None) -> None:
    import redis
    from django.db.models import Sum
    from django_tenants.utils import schema_context

    from access.quotas import tpd_key
    from audit.models import AuditEntry
    from inference.models import UsageDaily, UsageRecord

    simulator.faults.clear()
    own = OwnRedis()
    own.start()
    journal = tempfile.mkdtemp(prefix="atrium-journal-")
    env = web_env(simulator, REDIS_URL=own.url, CELERY_BROKER_URL=own.url, CELERY_RESULT_BACKEND=own.url,
                  ATRIUM_RECORD_JOURNAL_DIR=journal, ATRIUM_RECORD_COMMIT_WAIT_MS="2000",
                  ATRIUM_RECORD_JOURNAL_SCAN_S="1", ATRIUM_AUTH_CACHE_S="0", ATRIUM_TENANT_CACHE_S="0")
    hosts_resolve("alpha.localhost", "beta.localhost")
    users = {schema: committed_user(schema, "power_user") for schema in TENANTS}
    keys = {schema: key for schema, (_user, key) in users.items()}
    port = free_port()
    logs: list[Path] = []
    server = _server(env, port, logs)
    load = Load(keys=keys, url={"base": f"http://HOST:{port}"})
    threads = [threading.Thread(target=load.run, args=(tenant, stream), daemon=True)
               for tenant in TENANTS for stream in (False, False, True)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(3)
        _kill(server)  # 1. SIGKILL of the master and its workers, then a restart
        server = _server(env, port, logs)
        time.sleep(2)
        _postgres_cut(5)  # 2. PostgreSQL unreachable for 5 s
        time.sleep(2)
        with schema_context("beta"):
            _audit_inserts_fail("beta", 5)  # 3. one tenant's audit inserts fail for 5 s
        time.sleep(2)
        _audit_locked_then_killed(server, 4)  # 4. audit tables locked, then the web processes killed
        server = _server(env, port, logs)
        time.sleep(2)
        own.signal(signal.SIGSTOP)  # 5. Redis stopped for 7 s
        time.sleep(7)
        own.signal(signal.SIGCONT)
        time.sleep(2)
        own.kill()  # 6. Redis killed and restarted empty
        own.start()
        time.sleep(4)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()  # graceful: what is pending is written
    try:
        statuses: dict[str, int] = {}
        for o in load.outcomes:
            label = f"{o.tenant}:{o.status}{'' if o.complete else ':incomplete'}"
            statuses[label] = statuses.get(label, 0) + 1
        text = [log.read_text(errors="replace") for log in logs]
        print("fault test outcomes:", sorted(statuses.items()))
        print("journal replays per server start:", [t.count("record_replay") for t in text],
              "rebuilds:", [t.count("rebuilt from recorded usage") for t in text],
              "retries:", [t.count("record_retry") for t in text])
        # The serve-and-journal tenant was served while its records could not commit (table locked), and the
        # next start replayed what the killed processes had journaled; Redis came back empty and was rebuilt.
        assert "record_replay" in text[2], "the journals of the killed web processes were not replayed"
        assert "rebuilt from recorded usage" in text[2], "the quota counters were not rebuilt"
        assert statuses.get("alpha:503", 0) > 0  # fail closed while its records could not be made durable
        # PostgreSQL cut, Redis stopped or restarting: a 503 with Retry-After the client can act on, never a 500.
        assert not [label for label in statuses if label.split(":")[1] == "500"], statuses
        served = [o for o in load.outcomes if o.status == 200 and o.complete]
        by_tenant = {schema: [o.request_id for o in served if o.tenant == schema] for schema in TENANTS}
        assert all(len(ids) > 20 for ids in by_tenant.values()), {k: len(v) for k, v in by_tenant.items()}
        assert all(journal_records(Path(journal, f).read_bytes())[0] == [] for f in os.listdir(journal)), \
            "a journal was not replayed"
        client = redis.Redis.from_url(own.url)
        day = datetime.now(UTC)
        for schema, request_ids in by_tenant.items():
            with schema_context(schema):
                audit = dict(AuditEntry.objects.filter(request_id__in=request_ids).values_list("request_id", "seq"))
                usage = set(UsageRecord.objects.filter(request_id__in=request_ids).values_list("request_id",
                                                                                             flat=True))
                lost_audit = [r for r in request_ids if r not in audit]
                lost_usage = [r for r in request_ids if r not in usage]
                recorded = UsageRecord.objects.filter(day=day.date()).aggregate(t=Sum("charged_tokens"))["t"] or 0
                # Exactly once: one audit entry and one usage row per 200 (request ids are unique keys), and the
                # daily usage counts each of the user's recorded calls once (no double count on retry/replay).
                entries = AuditEntry.objects.filter(event_type="model_call", request_id__in=request_ids).count()
                user_pk = users[schema][0].pk
                ledger = UsageRecord.objects.filter(user_id=user_pk).count()
                counted = UsageDaily.objects.filter(user_id=user_pk).aggregate(n=Sum("requests"))["n"] or 0
                audited = AuditEntry.objects.filter(event_type="model_call", user_id=user_pk).count()
            assert len(set(request_ids)) == len(request_ids)
            assert lost_audit == [] and lost_usage == [], (schema, len(lost_audit), len(lost_usage))
            assert entries == len(request_ids), (schema, entries, len(request_ids))
            assert counted == ledger == audited, (schema, counted, ledger, audited)
            counter = int(client.get(tpd_key(schema, day.strftime("%Y%m%d"))) or 0)
            assert counter == recorded, (schema, counter, recorded)
        # The unique constraints make "exactly once" structural; the chains verify after all of it.
        from audit.chain import chain_verify

        for schema in TENANTS:
            with schema_context(schema):
                assert chain_verify().ok
    finally:
        own.kill()
        shutil.rmtree(journal, ignore_errors=True)


def test_a_subject_deleted_while_their_calls_are_in_flight_leaves_nothing_linked(
        web: WebServer, simulator: Simulator, clean: None, committed_user: Any, committed: None) -> None:
    from django.contrib.auth import get_user_model
    from django_tenants.utils import schema_context

    from audit.chain import chain_verify
    from audit.gdpr import gdpr_request, gdpr_run
    from audit.models import AuditEntry
    from inference.models import UsageDaily, UsageRecord

    subject, key = committed_user("alpha")
    officer, _ = committed_user("alpha", "compliance_officer")
    username = subject.get_username()
    simulator.faults.set("anthropic", latency_ms=1500)  # the calls are upstream while the deletion runs
    url = web.url("alpha.localhost") + "/v1/messages"
    payload = {"model": "claude-haiku-5-5", "max_tokens": 16, "messages": [{"role": "user", "content": "mine"}]}
    results: list[httpx.Response] = []

    def call() -> None:
        results.append(httpx.post(url, json=payload, headers={"x-api-key": key}, timeout=30))

    simulator.reset_requests()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(simulator.requests("anthropic")) < len(threads) and time.monotonic() < deadline:
        time.sleep(0.02)  # every call admitted and upstream (the simulator holds each for 1.5 s)
    with schema_context("alpha"):
        job = gdpr_request(kind="deletion", subject=subject, requested_by=officer)
        assert gdpr_run(str(job.id)) == "done"
    for thread in threads:
        thread.join(timeout=60)
    simulator.faults.clear()
    refused = httpx.post(url, json=payload, headers={"x-api-key": key}, timeout=30)
    assert refused.status_code == 401
    served = [r.headers["request-id"] for r in results if r.status_code == 200]
    assert len(served) == len(threads), [r.status_code for r in results]  # in flight at the deletion, answered
    with schema_context("alpha"):
        assert not AuditEntry.objects.filter(user_id=subject.pk).exists()
        assert not AuditEntry.objects.filter(personal__username=username).exists()
        late = AuditEntry.objects.filter(request_id__in=served)
        assert late.count() == len(served) and all(e.personal == {} and e.user_id is None for e in late)
        assert not UsageRecord.objects.filter(user_id=subject.pk).exists()
        assert UsageRecord.objects.filter(request_id__in=served).count() == len(served)
        assert not UsageDaily.objects.filter(user_id=subject.pk).exists()
        user = get_user_model().objects.get(pk=subject.pk)
        assert not user.is_active and user.get_username() != username
        assert chain_verify().ok

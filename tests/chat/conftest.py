"""Fixtures for the gateway, /v1 API, conversations API and web chat tests.

Providers are the project's simulator on loopback; credentials are placeholders it accepts.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inference.breaker import breaker_reset
from inference.providers.base import provider_clients_clear
from inference.simulator import Simulator
from tests.conftest import WebServer, hosts_resolve, subprocess_env

QUOTA_TENANT = "gamma"
METRICS_TOKEN = "test-metrics-token"  # a committed tenant whose quotas the server tests change

SIM_ENV = {
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "AWS_ACCESS_KEY_ID": "TESTACCESSKEYNOTREAL",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "ATRIUM_VERTEX_ACCESS_TOKEN": "ya29.test",
    "ANTHROPIC_VERTEX_PROJECT_ID": "atrium-test",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
}


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


def quota_keys_clear() -> None:
    from access.quotas import epoch_key, settled_key
    from config.redis import redis_client

    client = redis_client()
    for key in client.scan_iter("atrium:quota:*"):
        client.delete(key)
    # A fresh day for every test tenant: a new epoch, so the counters start at zero instead of being rebuilt from
    # the usage earlier tests recorded today (access.quotas.quota_rebuild; tested on its own)...
    schemas = ("alpha", "beta", QUOTA_TENANT)
    for schema in schemas:
        client.set(epoch_key(schema), uuid.uuid4().hex)
    # ...in which every call recorded so far counts as settled. A web server's settlement recovery
    # (inference.settle_recovery, at each worker's start and again 30 s later) adds the recorded calls of the last
    # 15 minutes that are missing from the day's settled set: with the sets emptied here it counted earlier tests'
    # calls (of this run or of the previous one: the test database is reused) in a later test's counters; and an
    # earlier test's settlement arriving after this clear would add its call to the fresh counters.
    for schema, day, ids in _recorded_calls(schemas):
        for start in range(0, len(ids), 1000):
            client.sadd(settled_key(schema, day), *ids[start:start + 1000])
        client.expire(settled_key(schema, day), 172800)


def _recorded_calls(schemas: tuple[str, ...]) -> list[tuple[str, str, list[str]]]:
    """(schema, day as the settled sets name it, request ids) of the committed calls of today and yesterday that
    charged tokens, as another process sees them (a connection of its own: no test transaction, no db fixture)."""
    from datetime import UTC, datetime, timedelta

    import psycopg
    from django.db import connection
    from opentelemetry.instrumentation.utils import suppress_instrumentation
    from psycopg import sql

    db = connection.settings_dict  # the test database
    since = datetime.now(UTC).date() - timedelta(days=1)
    out: list[tuple[str, str, list[str]]] = []
    # The fixture's own reads, not the product's: no spans (tests/ops/test_tracing.py counts what is traced).
    with suppress_instrumentation(), psycopg.connect(
            dbname=db["NAME"], user=db.get("USER") or "postgres", password=db.get("PASSWORD") or None,
            host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432, autocommit=True) as conn:
        for schema in schemas:
            table = sql.Identifier(schema, "inference_usagerecord")
            if conn.execute("SELECT to_regclass(%s)", [f"{schema}.inference_usagerecord"]).fetchone() == (None,):
                continue  # not provisioned yet
            by_day: dict[str, list[str]] = {}
            for request_id, day in conn.execute(sql.SQL(
                    "SELECT request_id, day FROM {} WHERE day >= %s AND charged_tokens > 0").format(table), [since]):
                by_day.setdefault(f"{day:%Y%m%d}", []).append(request_id)
            out += [(schema, day, ids) for day, ids in by_day.items()]
    return out


def providers_to_simulator(simulator: Simulator, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every provider pointed at the simulator with placeholder credentials, and its faults cleared."""
    for name, value in SIM_ENV.items():
        monkeypatch.setenv(name, value)
    settings.ATRIUM_ANTHROPIC_BASE_URL = f"{simulator.url}/anthropic"
    settings.ATRIUM_BEDROCK_BASE_URL = f"{simulator.url}/bedrock/{{region}}"
    settings.ATRIUM_VERTEX_BASE_URL = f"{simulator.url}/vertex/v1"
    settings.ATRIUM_VERTEX_PROJECT_ID = "atrium-test"
    settings.ATRIUM_VERTEX_ACCESS_TOKEN = "ya29.test"
    settings.ATRIUM_PROVIDER_ORDER = ["anthropic", "bedrock:us-east-1", "vertex:us-east5"]
    simulator.faults.clear()


@pytest.fixture
def sim(simulator: Simulator, settings: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """Every provider pointed at the simulator, placeholder credentials, clean faults, breakers and quotas."""
    providers_to_simulator(simulator, settings, monkeypatch)
    simulator.reset_requests()
    breaker_reset()
    provider_clients_clear()
    quota_keys_clear()
    yield simulator
    simulator.faults.clear()
    breaker_reset()
    quota_keys_clear()


@pytest.fixture
def tenant_update(in_tenant: Any) -> Iterator[Callable[..., None]]:
    """Change the tenant's policy row inside the test transaction (the middleware reads it per request).

    The session-wide tenant objects get the new values too, and their old values back after the test (the row
    itself is restored by the rollback).
    """
    from tenants.models import Tenant

    saved: list[tuple[Any, str, Any]] = []

    def _update(tenant: Any, **fields: Any) -> None:
        Tenant.objects.filter(pk=tenant.pk).update(**fields)
        for name, value in fields.items():
            saved.append((tenant, name, getattr(tenant, name)))
            setattr(tenant, name, value)
        if "processing_notice" in fields:  # as the policy page does, in the same transaction
            from audit.services import notice_publish

            with in_tenant(tenant):
                notice_publish(tenant)

    yield _update
    for tenant, name, value in reversed(saved):
        setattr(tenant, name, value)


@pytest.fixture
def api_key_for(in_tenant: Any) -> Callable[[Any, Any], str]:
    def _key(tenant: Any, user: Any) -> str:
        from access.services import api_key_create

        with in_tenant(tenant):
            _row, raw = api_key_create(user=user, name="test")
        return raw

    return _key


@pytest.fixture
def consented(in_tenant: Any) -> Callable[[Any, Any], None]:
    def _consent(tenant: Any, user: Any) -> None:
        from audit.services import consent_give, notice_current

        with in_tenant(tenant):
            notice = notice_current(tenant)
            if notice is not None:
                consent_give(user, notice)

    return _consent


def post_messages(client: Any, key: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/messages", data=json.dumps(body), content_type="application/json",
                       HTTP_X_API_KEY=key, **headers)


def sse_events(response: Any) -> list[dict[str, Any]]:
    raw = b"".join(response.streaming_content).decode()
    events = []
    for frame in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        events.append({"event": lines.get("event"), **json.loads(lines["data"])})
    return events


def body(text: str = "Hello", *, model: str = "claude-sonnet-5-5", max_tokens: int = 64,
         **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}], **extra}


# --- a real gunicorn for the SDK, quota and browser tests ------------------------------------------

def web_env(simulator: Simulator, **overrides: str) -> dict[str, str]:
    """The environment of a gunicorn serving Atrium against the simulator, on the production code paths."""
    defaults = dict(
        SIM_ENV,
        ATRIUM_ANTHROPIC_BASE_URL=f"{simulator.url}/anthropic",
        ATRIUM_BEDROCK_BASE_URL=f"{simulator.url}/bedrock/{{region}}",
        ATRIUM_VERTEX_BASE_URL=f"{simulator.url}/vertex/v1",
        ATRIUM_PROVIDER_ORDER="anthropic,bedrock:us-east-1,vertex:us-east5",
        ATRIUM_RECORD_IN_BACKGROUND="true",  # the production path: records written off the request thread
        ATRIUM_AUTH_CACHE_S="30",  # the production path: keys, hosts and consent cached per process, emptied
        ATRIUM_TENANT_CACHE_S="30",  # by PostgreSQL at every commit (config/tenant_cache.py)
        PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="atrium-prom-"),  # /metrics sums both workers
        ATRIUM_METRICS_TOKEN=METRICS_TOKEN,
    )
    return subprocess_env(**{**defaults, **overrides})


@pytest.fixture(scope="module")
def web(simulator: Simulator, tenants: dict[str, Any], django_db_blocker: Any) -> Iterator[WebServer]:
    from django.db import InterfaceError, OperationalError, connection

    from tenants.models import Tenant
    from tenants.services import tenant_provision

    with django_db_blocker.unblock():
        try:
            exists = Tenant.objects.filter(schema_name=QUOTA_TENANT).exists()
        except (OperationalError, InterfaceError):
            # This process's connection died since the test's setup began (seen in fresh-clone runs after the
            # fault tests: PostgreSQL terminated it); a new one is opened for the query.
            connection.close()
            exists = Tenant.objects.filter(schema_name=QUOTA_TENANT).exists()
        if not exists:
            tenant_provision(slug=QUOTA_TENANT, name="Gamma")
    hosts_resolve("alpha.localhost", "beta.localhost", f"{QUOTA_TENANT}.localhost")
    env = web_env(simulator)
    server = WebServer(env, workers=2).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clean(simulator: Simulator) -> Iterator[None]:
    simulator.faults.clear()
    breaker_reset()
    quota_keys_clear()
    yield
    simulator.faults.clear()
    breaker_reset()
    quota_keys_clear()


@pytest.fixture
def committed_user(committed: None) -> Iterator[Callable[..., tuple[Any, str]]]:
    """Committed users with API keys (the server process must see them); deleted afterwards."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    from access.services import api_key_create

    made: list[tuple[str, int]] = []

    def _make(schema: str, role: str = "basic_user", password: str | None = None) -> tuple[Any, str]:
        with schema_context(schema):
            name = f"{role}-{uuid.uuid4().hex[:8]}"
            user = get_user_model().objects.create_user(username=name, email=f"{name}@example.com",
                                                        password=password)
            user.groups.add(Group.objects.get(name=role))
            _row, raw = api_key_create(user=user, name="sdk test")
            made.append((schema, user.pk))
            return user, raw

    yield _make
    from django.db import IntegrityError

    for schema, pk in made:
        with schema_context(schema):
            for attempt in range(50):  # a server's background writer may still be recording the last calls
                try:
                    get_user_model().objects.filter(pk=pk).delete()
                    break
                except IntegrityError:
                    if attempt == 49:
                        raise
                    time.sleep(0.1)


@pytest.fixture
def quota_policy(committed: None) -> Iterator[Callable[..., None]]:
    from tenants.models import Tenant

    fields = ("requests_per_minute", "tokens_per_day", "user_requests_per_minute", "user_tokens_per_day")
    original = Tenant.objects.filter(schema_name=QUOTA_TENANT).values(*fields).get()

    def _set(**values: Any) -> None:
        Tenant.objects.filter(schema_name=QUOTA_TENANT).update(**values)

    yield _set
    Tenant.objects.filter(schema_name=QUOTA_TENANT).update(**original)

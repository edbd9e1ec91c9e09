"""Shared fixtures: committed test tenants, tenant-scoped clients, real worker processes.

Tests run against real PostgreSQL and Redis (config/devstack.py picks them). Provider credentials
from the developer's environment are removed before anything imports an SDK.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.isolation import _fresh_catalog_cache, _public_schema  # noqa: F401 (autouse fixtures)

_CREDENTIAL_ENV = re.compile(r"^(ANTHROPIC_|AWS_|GOOGLE_|CLOUD_ML_REGION$)")
for _name in list(os.environ):
    if _CREDENTIAL_ENV.match(_name):
        del os.environ[_name]

ROOT = Path(__file__).resolve().parent.parent
TENANT_A = "alpha"
TENANT_B = "beta"


@pytest.fixture(autouse=True)
def _no_provider_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if _CREDENTIAL_ENV.match(name):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True, scope="session")
def _api_lane_in_the_test_client() -> Iterator[None]:
    """The test client sends /v1/* through the API lane, as the served application does (tests/lane.py)."""
    from tests.lane import lane_in_the_test_client

    yield from lane_in_the_test_client()


def _ensure_tenant(slug: str) -> Any:
    from django_tenants.utils import schema_context

    from tenants.models import Tenant
    from tenants.services import tenant_provision, tenant_public_ensure

    tenant_public_ensure(domain="localhost")
    tenant = Tenant.objects.filter(schema_name=slug).first()
    if tenant is None:
        tenant = tenant_provision(slug=slug, name=slug.title()).tenant
    with schema_context(slug):
        from access.roles import roles_seed

        roles_seed()
    return tenant


@pytest.fixture(scope="session")
def django_db_setup(request: pytest.FixtureRequest, django_test_environment: None, django_db_blocker: Any,
                    django_db_keepdb: bool, django_db_createdb: bool, django_db_modify_db_settings: None) -> None:
    """The test database, always: pytest-django only creates it when a collected test is marked django_db, but
    the server, worker and browser tests use committed data without that mark (their writes must be visible to
    other processes), and may run alone."""
    from django.test.utils import setup_databases

    with django_db_blocker.unblock():
        setup_databases(verbosity=request.config.option.verbose, interactive=False, aliases={"default"},
                        keepdb=django_db_keepdb and not django_db_createdb)
        _forget_stale_checkpoint_files()


def _forget_stale_checkpoint_files() -> None:
    """A database without checkpoints is new: checkpoint files left by an older test database would claim chains
    longer than this one's (audit.platform.checkpoints), so they go."""
    import shutil

    from django.conf import settings

    from audit.platform.models import ChainCheckpoint

    if not ChainCheckpoint.objects.exists():
        shutil.rmtree(settings.ATRIUM_AUDIT_CHECKPOINT_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def tenants(django_db_setup: None, django_db_blocker: Any) -> dict[str, Any]:
    """Two committed tenants (alpha, beta) shared by the whole session."""
    with django_db_blocker.unblock():
        return {TENANT_A: _ensure_tenant(TENANT_A), TENANT_B: _ensure_tenant(TENANT_B)}


@pytest.fixture
def tenant_a(tenants: dict[str, Any]) -> Any:
    return tenants[TENANT_A]


@pytest.fixture
def tenant_b(tenants: dict[str, Any]) -> Any:
    return tenants[TENANT_B]


@pytest.fixture
def in_tenant(db: None) -> Iterator[Callable[[Any], contextlib.AbstractContextManager[None]]]:
    """`with in_tenant(tenant_a): ...` runs ORM code in that tenant's schema, inside the test transaction."""
    from django.db import connection

    @contextlib.contextmanager
    def _enter(tenant: Any) -> Iterator[None]:
        previous = connection.tenant if hasattr(connection, "tenant") else None
        connection.set_tenant(tenant)
        try:
            yield
        finally:
            if previous is not None and previous.schema_name != "public":
                connection.set_tenant(previous)
            else:
                connection.set_schema_to_public()

    yield _enter
    connection.set_schema_to_public()


def tenant_host(tenant: Any) -> str:
    return f"{tenant.schema_name.replace('_', '-')}.localhost"


@pytest.fixture
def client_a(tenant_a: Any, db: None) -> Any:
    from django.test import Client

    return Client(HTTP_HOST=tenant_host(tenant_a))


@pytest.fixture
def client_b(tenant_b: Any, db: None) -> Any:
    from django.test import Client

    return Client(HTTP_HOST=tenant_host(tenant_b))


@pytest.fixture
def public_client(tenants: dict[str, Any], db: None) -> Any:
    from django.test import Client

    return Client(HTTP_HOST="localhost")


@pytest.fixture
def make_user(in_tenant: Callable[[Any], contextlib.AbstractContextManager[None]]) -> Callable[..., Any]:
    """make_user(tenant, role="basic_user", username=None, password="pw-Secret-123") inside the test transaction."""

    def _make(tenant: Any, role: str | None = "basic_user", username: str | None = None,
              password: str = "pw-Secret-123", **extra: Any) -> Any:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        with in_tenant(tenant):
            name = username or f"{role or 'user'}-{uuid.uuid4().hex[:8]}"
            user = get_user_model().objects.create_user(
                username=name, email=f"{name}@example.com", password=password, **extra
            )
            if role:
                user.groups.add(Group.objects.get(name=role))
            return user

    return _make


# --- processes that need committed data: worker, web server -------------------------------------

def subprocess_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process that must see this test session's database and Redis."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict  # the test database pytest-django created, not the configured one
    host = db.get("HOST") or "127.0.0.1"
    from urllib.parse import quote

    host_part = quote(host, safe="") if host.startswith("/") else f"{host}:{db.get('PORT') or 5432}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=f"postgres://{user}{password}@{host_part}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CELERY_RESULT_BACKEND=settings.CELERY_RESULT_BACKEND,
        ATRIUM_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        PYTHONPATH=str(ROOT),
    )
    env.update(overrides)
    return env


def stop_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a child started with start_new_session=True and its children; SIGKILL after 20 s."""
    import signal

    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class WorkerProcess:
    """A real `celery worker` child process; restartable, killable (SIGKILL) for crash tests."""

    def __init__(self, queue: str, env: dict[str, str]) -> None:
        self.queue = queue
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(f"/tmp/atrium-worker-{queue}.log")

    def start(self) -> None:
        self.log_handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queue, "-c", "1",
             "--pool", "prefork", "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"{self.queue}@%h"],
            cwd=ROOT, env=self.env, stdout=self.log_handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early; see {self.log}")
            if b"ready." in self.log.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not become ready; see {self.log}")

    def kill(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_group(self.proc)


@pytest.fixture
def celery_worker_process(tenants: dict[str, Any]) -> Iterator[WorkerProcess]:
    """A real worker on a private queue; tasks sent with queue=worker.queue reach only it."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(queue, subprocess_env())
    if worker.log.exists():
        worker.log.unlink()
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def committed(tenants: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    """Database access outside any test transaction: what the test writes is visible to other processes.

    The test cleans up what it creates (unique names make leftovers harmless). Used for tests that
    talk to a real worker or web server process.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        try:
            yield
        finally:
            connection.set_schema_to_public()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hosts_resolve(*hosts: str) -> None:
    """Make `<tenant>.localhost` resolve for clients that do their own DNS (SDKs, curl), as `make run` does."""
    from config.devstack import ensure_hosts_entry

    for host in hosts:
        ensure_hosts_entry(host)


class WebServer:
    """The real web server serving Atrium (`python -m config.serve`: granian, several worker processes with
    threads) on a free loopback port."""

    def __init__(self, env: dict[str, str], workers: int = 2) -> None:
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(f"/tmp/atrium-web-{self.port}.log")

    def url(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def start(self) -> WebServer:
        import urllib.request

        self.log_handle = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "config.serve", "--bind", f"127.0.0.1:{self.port}", "--workers",
             str(self.workers), "--threads", "8"],
            cwd=ROOT, env=self.env, stdout=self.log_handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the web server exited early; see {self.log}")
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{self.port}/healthz", headers={"Host": "localhost"})
                with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the web server did not answer /healthz; see {self.log}")

    def stop(self) -> None:
        stop_group(self.proc)


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (no browser download: executable_path)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the tests run between its
    # calls, never inside a coroutine.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each test's setup starts with a live database connection. Whatever ends this process's connection (a test
    terminating backends, a PostgreSQL restart, another run on the same test database) leaves it dead, and Django
    would not notice before the next query failed with it. This runs before any fixture of the test is set up,
    module-scoped ones included (tests/chat's `web`): pytest sets those up lazily, in the first test that uses them,
    so a check at the start of the module would run before the module's earlier tests, which may be the ones that
    end the connection (tests/ops/test_harness_connection.py)."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.is_usable():
            continue
        # Dead. Whatever transaction it had went with it: an atomic block left open around it (a fixture that
        # failed inside one) would otherwise keep Django from opening a new connection.
        print(f"harness: closing a dead database connection before {item.nodeid} "
              f"(in_atomic_block={connection.in_atomic_block})", file=sys.__stderr__, flush=True)
        if connection.in_atomic_block:
            connection.atomic_blocks.clear()
            connection.savepoint_ids.clear()
            connection.in_atomic_block = False
            connection.needs_rollback = False
            connection.closed_in_transaction = False
        connection.close()

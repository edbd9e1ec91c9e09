"""The provider health check run by a real Celery worker, as beat sends it every minute: its checks run on a
pool of threads that ends with each run, and a thread that read the database (the model catalog, reloaded every
ATRIUM_CATALOG_CACHE_S) must not leave its connection open behind it; Celery closes only the task's own thread's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from inference.simulator import Simulator
from tests.chat.conftest import SIM_ENV
from tests.conftest import WorkerProcess, subprocess_env

pytestmark = pytest.mark.slow
RUNS = 4


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


def _connections(worker: WorkerProcess, port: int) -> int:
    assert worker.proc is not None
    main = psutil.Process(worker.proc.pid)
    return sum(1 for process in [main, *main.children(recursive=True)]
               for conn in process.net_connections(kind="tcp")
               if conn.status == psutil.CONN_ESTABLISHED and conn.raddr and conn.raddr.port == port)


def test_health_check_runs_leave_no_database_connection_of_their_threads(simulator: Simulator, committed: None,
                                                                        tenants: dict[str, Any]) -> None:
    from django.db import connection

    from inference.catalog.models import ProviderHealthCheck
    from inference.tasks import provider_health_check_all

    pg_port = int(connection.settings_dict.get("PORT") or 5432)
    queue = f"health-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(queue, subprocess_env(
        **SIM_ENV, ATRIUM_ANTHROPIC_BASE_URL=f"{simulator.url}/anthropic",
        ATRIUM_BEDROCK_BASE_URL=f"{simulator.url}/bedrock/{{region}}",
        ATRIUM_VERTEX_BASE_URL=f"{simulator.url}/vertex/v1",
        ATRIUM_PROVIDER_ORDER="anthropic,bedrock:us-east-1,vertex:us-east5",
        ATRIUM_CATALOG_CACHE_S="0"))  # every run reloads the catalog, in whichever thread reads it first
    worker.start()
    seen: list[int] = []
    try:
        for _ in range(RUNS):
            before = ProviderHealthCheck.objects.count()
            provider_health_check_all.apply_async(queue=queue)
            deadline = time.monotonic() + 120  # against a hang only
            while ProviderHealthCheck.objects.count() < before + 3:
                assert time.monotonic() < deadline, "the health check did not run"
                time.sleep(0.2)
            time.sleep(1.0)  # the task ends (Celery closes its thread's connection) after its rows commit
            seen.append(_connections(worker, pg_port))
    finally:
        worker.stop()
    # At most the worker's own listening connection (config/tenant_cache.py), nothing per run: the old code
    # left one more open at each run, [3, 4, 5, 6].
    assert max(seen) <= 1, seen

"""With its caches warm, a /v1/messages call makes no database query in the request's thread (issue 18): the
tenant, the API key with its user and permissions, the consent decision and the budgets that apply all come from
the per-process caches that PostgreSQL empties at commit (config/tenant_cache.py); only the call's record is
written, by the record writer on its own connection. A query that creeps back onto the hot path (as the budgets'
did) costs every call a round trip, and Django's connection health check with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from config import tenant_cache
from config.tenant_cache import cache_listener_ready
from inference.providers.base import provider_clients_clear
from inference.simulator import Simulator
from tests.chat.conftest import QUOTA_TENANT, body, post_messages, providers_to_simulator, quota_keys_clear
from tests.tenants.test_cache_invalidation import eventually


@pytest.fixture(scope="module", autouse=True)
def _listener_stopped_afterwards() -> Iterator[None]:
    yield
    tenant_cache.cache_listener_stop()


@pytest.fixture
def production_caches(simulator: Simulator, settings: Any, monkeypatch: pytest.MonkeyPatch,
                      committed: None) -> Iterator[None]:
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    if not Tenant.objects.filter(schema_name=QUOTA_TENANT).exists():
        tenant_provision(slug=QUOTA_TENANT, name="Gamma")
    providers_to_simulator(simulator, settings, monkeypatch)
    provider_clients_clear()
    quota_keys_clear()
    settings.ATRIUM_AUTH_CACHE_S = 300
    settings.ATRIUM_TENANT_CACHE_S = 300
    settings.ATRIUM_RECORD_IN_BACKGROUND = True  # the production path: the writer thread, its own connection
    assert cache_listener_ready(), "the cache listener did not subscribe"
    yield
    quota_keys_clear()


def test_a_warm_call_makes_no_query_in_the_request_thread(production_caches: None, committed_user: Any) -> None:
    _user, key = committed_user(QUOTA_TENANT, "basic_user")
    client = Client(HTTP_HOST=f"{QUOTA_TENANT}.localhost")
    counted: list[tuple[int, list[str]]] = []

    def call() -> bool:
        with CaptureQueriesContext(connection) as queries:
            response = post_messages(client, key, body("Hot path", model="claude-haiku-5-5"))
        assert response.status_code == 200, response.content
        counted.append((response.status_code, [q["sql"][:120] for q in queries.captured_queries]))
        return not queries.captured_queries

    # The first calls fill the caches (and the set-up's own commits may empty them once as their notifications
    # arrive); then a call must cost none.
    eventually(call, "a call with no query in the request thread (see `counted` for the queries made)")
    assert call() and call(), counted[-2:]

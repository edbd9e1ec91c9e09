"""The test harness's own resilience (tests/conftest.py, pytest_runtest_setup): a test that ends this process's
database connection does not break the setup of the next test's fixtures, module-scoped ones included, which
pytest sets up lazily in the first test that uses them (after the earlier tests of the module ran).

The two tests run in file order: the first ends the connection, the second's module fixture must get a live one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

_killed: list[int] = []


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@pytest.fixture(scope="module")
def tenant_count(tenants: dict[str, Any], django_db_blocker: Any) -> Iterator[tuple[int, int]]:
    """Set up in the second test only (the first does not use it): after the connection was ended."""
    from tenants.models import Tenant

    with django_db_blocker.unblock():
        yield Tenant.objects.count(), _backend_pid()


def test_a_test_ends_this_process_connection(committed: None) -> None:
    from django.db import connection

    pid = _backend_pid()
    db = connection.settings_dict
    with psycopg.connect(host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432,
                         user=db.get("USER") or "postgres", password=db.get("PASSWORD") or None, dbname="postgres",
                         autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    _killed.append(pid)
    assert not connection.is_usable()  # dead, and Django has not noticed: its next query would fail


def test_the_next_tests_module_fixture_gets_a_live_connection(tenant_count: tuple[int, int]) -> None:
    count, pid = tenant_count
    assert count >= 2  # the query ran: alpha and beta at least
    assert _killed and pid != _killed[0]  # on a new connection, not the one the first test ended

"""A test ends where the next one starts: on the public schema (tests/isolation.py), whatever tenant its requests
through the test client visited. Two tests in this order (pytest keeps a file's order with -p no:randomly; in
another order the second proves nothing and still passes)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db


def test_a_request_to_a_tenant_host_leaves_the_connection_on_its_schema(client_a: Any, tenant_a: Any) -> None:
    from django.db import connection

    client_a.get("/healthz")
    client_a.get("/accounts/login/")
    assert connection.schema_name == tenant_a.schema_name  # what the next test must not inherit


def test_the_next_test_starts_on_the_public_schema() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    assert connection.schema_name == "public"
    # What tests/inference/test_health.py::test_status_page_shows_breaker_and_history does first: a platform
    # superuser is only allowed in public (auth_user_no_tenant_superuser in a tenant's schema).
    assert get_user_model().objects.create_superuser("root-between-tests", "root@example.com", "pw").is_superuser

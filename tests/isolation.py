"""Process state every test starts and ends without (autouse, imported by tests/conftest.py): what one test leaves
in this process must not decide how the next one runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_catalog_cache() -> Iterator[None]:
    """A test that edits the model catalog inside its rolled-back transaction leaves the in-process catalog cache
    holding the edit (the rollback sends no signal); start and end every test with the database's catalog."""
    from inference.catalog.selectors import catalog_invalidate

    catalog_invalidate()
    yield
    catalog_invalidate()


@pytest.fixture(autouse=True)
def _public_schema() -> Iterator[None]:
    """Every test starts and ends on the public schema. A request through the test client to a tenant's host runs
    in this thread, on this process's connection, and django-tenants' middleware leaves that connection on the
    tenant's schema when the request ends (the served application is unaffected: its middleware sets the schema
    again first thing in every request). The next test then ran its ORM calls in that tenant: after tests/access/
    test_jwt.py, tests/inference/test_health.py's create_superuser wrote into alpha's auth_user and hit
    auth_user_no_tenant_superuser. Only the connection's search path is reset here: no query, no database access."""
    from django.db import connection

    connection.set_schema_to_public()
    yield
    connection.set_schema_to_public()

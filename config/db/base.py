"""Atrium's PostgreSQL backend: django-tenants' backend, made safe behind PgBouncer's transaction pooling.

django-tenants selects a tenant with a session-level `SET search_path` sent as its own statement when a cursor is
opened. Behind a pooler in transaction mode every autocommit statement may run on a different server connection,
so that SET can land on one connection and the query on another, whose search_path another client set: a query
of one tenant reading another tenant's tables (django-tenants issues #447, #545, #1112). PgBouncer 1.18 (Debian
12) cannot track search_path either.

With DATABASE_POOL_MODE=transaction this backend sends the SET in the same simple-protocol message as every
statement ("SET search_path = …; <statement>"): PostgreSQL runs one message in one implicit transaction, which the
pooler never splits, so each statement carries its own tenant. Cursors bind parameters client-side (Django's
default with psycopg 3), which the simple protocol needs, and server-side cursors are off (settings).
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper
from django_tenants.postgresql_backend.base import quote_schema_name
from psycopg import sql


def pool_mode() -> str:
    return str(getattr(settings, "DATABASE_POOL_MODE", "session"))


# A persistent connection is closed after CONN_MAX_AGE less up to this share of it, at random (issue 18: a web
# worker's threads open their connections together at its start, so without it they all reached CONN_MAX_AGE in
# the same second and reconnected together, every CONN_MAX_AGE, a spike in the c=32 tail).
CONN_AGE_JITTER = 0.25


class DatabaseWrapper(TenantDatabaseWrapper):
    def connect(self) -> None:
        super().connect()
        max_age = self.settings_dict["CONN_MAX_AGE"]
        if self.close_at is not None and max_age:
            self.close_at -= max_age * CONN_AGE_JITTER * random.random()  # noqa: S311 - a spread, not a secret

    def _handle_search_path(self, cursor: Any = None) -> None:
        if pool_mode() != "transaction":
            super()._handle_search_path(cursor)
        # Transaction pooling: PoolSafeCursor sends the search path with each statement instead.

    def search_path_statement(self) -> str:
        return "SET search_path = " + ",".join(quote_schema_name(s) for s in self._get_cursor_search_paths())

    def create_cursor(self, name: Any = None) -> Any:
        cursor = super().create_cursor(name)
        if pool_mode() == "transaction" and name is None:
            cursor.__class__ = _pool_safe_class(type(cursor))
            cursor.atrium_wrapper = self
        return cursor


_CLASSES: dict[type, type] = {}


def _pool_safe_class(base: type) -> type:
    if base not in _CLASSES:
        _CLASSES[base] = type(f"PoolSafe{base.__name__}", (PoolSafeCursorMixin, base), {})
    return _CLASSES[base]


class PoolSafeCursorMixin:
    """Prefixes every statement with the connection's current search path, in the same message."""

    atrium_wrapper: DatabaseWrapper

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        prefix = self.atrium_wrapper.search_path_statement() + "; "
        if isinstance(query, bytes):
            query = prefix.encode() + query
        elif isinstance(query, str):
            query = prefix + query
        else:  # psycopg.sql.Composable
            query = sql.Composed([sql.SQL(prefix), query])  # type: ignore[list-item]
        result = super().execute(query, params, **kwargs)  # type: ignore[misc]
        # The cursor stands on the SET's (empty) result; move to the statement's own.
        self.nextset()  # type: ignore[attr-defined]
        return result

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        # psycopg's executemany pipelines (extended protocol, one statement per message): run them one by one.
        for params in params_seq:
            self.execute(query, params)

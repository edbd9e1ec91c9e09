"""The access app's raw SQL, in one place: each query names the columns it selects and reads them back by name.

Used where the ORM's query building costs more than the round trip (the API-key lookup on every /v1 call,
bench/overhead.py) or where Django would run two queries (a user's permissions). Identifiers (tables, columns) are
composed with psycopg.sql.Identifier, never pasted into the text; values are always parameters.
tests/access/test_queries.py round-trips every column list against the ORM.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from psycopg import sql

from access.models import ApiKey

# "app_label.codename" of every permission of the user aliased `u`, directly or through groups (Django's
# ModelBackend set), as one array column.
PERMISSIONS_OF_USER = sql.SQL(
    "ARRAY(SELECT ct.app_label || '.' || p.codename FROM auth_permission p "
    "JOIN django_content_type ct ON ct.id = p.content_type_id WHERE p.id IN ("
    "SELECT permission_id FROM auth_user_user_permissions WHERE user_id = u.id UNION "
    "SELECT gp.permission_id FROM auth_user_groups ug JOIN auth_group_permissions gp "
    "ON gp.group_id = ug.group_id WHERE ug.user_id = u.id))"
)


@functools.cache
def key_columns() -> tuple[str, ...]:
    """The API key's columns (attnames), as ApiKey.from_db expects them."""
    return tuple(f.attname for f in ApiKey._meta.concrete_fields)


@functools.cache
def user_columns() -> tuple[str, ...]:
    """The user model's columns (attnames), read once: the model is fixed for the process."""
    return tuple(f.attname for f in get_user_model()._meta.concrete_fields)


@dataclass(frozen=True)
class KeyRows:
    """An API key's row, its user's row (column name -> value) and the user's permissions."""

    key: dict[str, Any]
    user: dict[str, Any]
    permissions: frozenset[str]


def _aliased(table_alias: str, columns: tuple[str, ...], prefix: str) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{}.{} AS {}").format(sql.Identifier(table_alias), sql.Identifier(c), sql.Identifier(prefix + c))
        for c in columns
    )


def _fetch_named(cursor: Any) -> dict[str, Any] | None:
    row = cursor.fetchone()
    if row is None:
        return None
    return {column.name: value for column, value in zip(cursor.description, row, strict=True)}


def api_key_rows(prefix: str) -> KeyRows | None:
    """The key with this prefix, its user and the user's permissions, in one query (None when no such key)."""
    user_model = get_user_model()
    query = sql.SQL(
        "SELECT {key_columns}, {user_columns}, {permissions} AS permissions "
        "FROM {keys} k JOIN {users} u ON u.id = k.user_id WHERE k.prefix = %s"
    ).format(
        key_columns=_aliased("k", key_columns(), "key__"),
        user_columns=_aliased("u", user_columns(), "user__"),
        permissions=PERMISSIONS_OF_USER,
        keys=sql.Identifier(ApiKey._meta.db_table),
        users=sql.Identifier(user_model._meta.db_table),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [prefix])
        named = _fetch_named(cursor)
    if named is None:
        return None
    return KeyRows(
        key={c: named[f"key__{c}"] for c in key_columns()},
        user={c: named[f"user__{c}"] for c in user_columns()},
        permissions=frozenset(named["permissions"] or ()),
    )


def user_rows_by_id(user_id: int) -> tuple[dict[str, Any], frozenset[str]] | None:
    """A user's row (column name -> value) and permissions in one query (None when there is no such user)."""
    query = sql.SQL("SELECT {user_columns}, {permissions} AS permissions FROM {users} u WHERE u.id = %s").format(
        user_columns=_aliased("u", user_columns(), "user__"), permissions=PERMISSIONS_OF_USER,
        users=sql.Identifier(get_user_model()._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(query, [user_id])
        named = _fetch_named(cursor)
    if named is None:
        return None
    return {c: named[f"user__{c}"] for c in user_columns()}, frozenset(named["permissions"] or ())


def user_permissions(user_id: int) -> set[str] | None:
    """Every permission of this user as "app_label.codename" (None when there is no such user)."""
    query = sql.SQL("SELECT {permissions} AS permissions FROM {users} u WHERE u.id = %s").format(
        permissions=PERMISSIONS_OF_USER, users=sql.Identifier(get_user_model()._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(query, [user_id])
        named = _fetch_named(cursor)
    return None if named is None else set(named["permissions"] or ())

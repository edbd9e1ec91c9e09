"""Tampering the way someone with database superuser rights would: triggers off (per session or per table), SQL."""

from __future__ import annotations

from typing import Any

from django.db import connection


def as_replica(*statements: str | tuple[str, list[Any]]) -> None:
    """Run statements with `session_replication_role = replica`: no ordinary trigger fires."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            for statement in statements:
                sql, params = statement if isinstance(statement, tuple) else (statement, [])
                cursor.execute(sql, params)
        finally:
            cursor.execute("SET session_replication_role = origin")


def with_triggers_disabled(table: str, *statements: str | tuple[str, list[Any]]) -> None:
    """Run statements with every user trigger of `table` disabled (ALTER TABLE … DISABLE TRIGGER USER)."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in statements:
            sql, params = statement if isinstance(statement, tuple) else (statement, [])
            cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")

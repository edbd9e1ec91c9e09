"""The tenants app's raw SQL, in one place: schemas and the encrypted columns of any schema's tables.

These statements name a schema chosen at run time (key rotation walks every tenant's schema, a transfer rewrites
a restored one), which the ORM cannot address. Schema, table and column names are composed with
psycopg.sql.Identifier, never pasted into the text; values are always parameters; rows are read back by column
name. tests/tenants/test_queries.py round-trips them against the ORM.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from psycopg import sql


@dataclass(frozen=True)
class EncryptedRow:
    """One row's primary key and its encrypted columns (column name -> stored ciphertext, None when empty)."""

    id: Any
    values: dict[str, Any]


def schema_create(schema: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def schema_drop(schema: str) -> None:
    """Drop the schema and everything in it (no error when it does not exist)."""
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def schema_present(schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [schema])
        return cursor.fetchone() is not None


def table_present(schema: str, table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                       [schema, table])
        return cursor.fetchone() is not None


def encrypted_rows(schema: str, table: str, columns: Iterable[str], *, for_update: bool = False,
                   ) -> list[EncryptedRow]:
    """Every row of `schema`.`table` with these columns, locked FOR UPDATE when asked (key rotation)."""
    names = list(columns)
    query = sql.SQL("SELECT {id}, {columns} FROM {table}{lock}").format(
        id=sql.Identifier("id"),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in names),
        table=sql.Identifier(schema, table),
        lock=sql.SQL(" FOR UPDATE") if for_update else sql.SQL(""),
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        described = [column.name for column in cursor.description]
        rows = [dict(zip(described, row, strict=True)) for row in cursor.fetchall()]
    return [EncryptedRow(id=row["id"], values={c: row[c] for c in names}) for row in rows]


def encrypted_row_update(schema: str, table: str, row_id: Any, values: dict[str, Any]) -> None:
    """Write these columns of one row of `schema`.`table`."""
    names = list(values)
    query = sql.SQL("UPDATE {table} SET {assignments} WHERE {id} = %s").format(
        table=sql.Identifier(schema, table),
        assignments=sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in names),
        id=sql.Identifier("id"),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [*(values[c] for c in names), row_id])

"""The audit app's raw SQL, in one place: chain locks and heads, walking a chain, redaction, the GDPR job lease.

Raw because each is one round trip the ORM would make two of, or a lock the ORM has no words for. Table names are
composed with psycopg.sql.Identifier, values are parameters, and rows are read back by column name
(`cursor.description`), never by position. tests/audit/test_queries.py round-trips each column list.
(The audit writer's own statements live in audit/services.py and audit/platform/services.py.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django_tenants.utils import get_public_schema_name
from psycopg import sql

# A tenant's chain lives in its own schema (found on the search path); the platform's in the public schema.
TENANT_TABLE = "audit_auditentry"
PLATFORM_TABLE = "audit_platform_platformauditentry"


def tenant_table() -> sql.Composable:
    return sql.Identifier(TENANT_TABLE)


def platform_table() -> sql.Composable:
    return sql.Identifier(get_public_schema_name(), PLATFORM_TABLE)


def _named(cursor: Any, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def advisory_xact_lock(name: str) -> None:
    """Hold the transaction-scoped advisory lock `name` until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])


def tenant_chain_lock() -> None:
    """The append lock of the current schema's chain (named after the schema, so tenants never wait on each other)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('atrium.audit.' || current_schema()))")


def tenant_chain_lock_head() -> tuple[int, str] | None:
    """Take the append lock and read the head (seq, mac) in one round trip (the function of migration 0004);
    None when the chain is empty."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT head_seq, head_mac FROM atrium_audit_lock_head()")
        rows = _named(cursor, cursor.fetchall())
    if not rows or rows[0]["head_seq"] is None:
        return None
    return int(rows[0]["head_seq"]), str(rows[0]["head_mac"])


def chain_head(table: sql.Composable) -> tuple[int, str] | None:
    """The last (seq, mac) of the chain in `table` (tenant_table() or platform_table()); None when empty."""
    query = sql.SQL("SELECT seq, mac FROM {} ORDER BY seq DESC LIMIT 1").format(table)
    with connection.cursor() as cursor:
        cursor.execute(query)
        rows = _named(cursor, cursor.fetchall())
    return (int(rows[0]["seq"]), str(rows[0]["mac"])) if rows else None


def chain_entries(table: sql.Composable, columns: Sequence[str], *, after_seq: int, limit: int,
                  ) -> list[dict[str, Any]]:
    """Up to `limit` entries of the chain in `table` after `after_seq`, in order, as column name -> value."""
    query = sql.SQL("SELECT {columns} FROM {table} WHERE seq > %s ORDER BY seq LIMIT %s").format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns), table=table)
    with connection.cursor() as cursor:
        cursor.execute(query, [after_seq, limit])
        return _named(cursor, cursor.fetchall())


def entries_redact(user_id: int, limit: int) -> int:
    """Blank the personal columns of up to `limit` of one user's entries in the current schema; how many."""
    query = sql.SQL(
        "UPDATE {table} SET user_id = NULL, personal = '{{}}'::jsonb, redacted_at = now() "
        "WHERE id IN (SELECT id FROM {table} WHERE user_id = %s LIMIT %s)"
    ).format(table=tenant_table())
    with connection.cursor() as cursor:
        cursor.execute(query, [user_id, limit])
        return int(cursor.rowcount)


def gdpr_job_lease(job_id: str, lease_s: float) -> bool:
    """Take a queued or running job's lease for `lease_s` seconds unless another worker holds a live one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_gdprjob SET lease_until = now() + make_interval(secs => %s), attempts = attempts + 1, "
            "status = 'running', updated_at = now() WHERE id = %s AND status IN ('queued', 'running') "
            "AND (lease_until IS NULL OR lease_until < now()) RETURNING id",
            [lease_s, job_id],
        )
        return cursor.fetchone() is not None


def chain_heads(tables: dict[str, sql.Composable], chunk: int = 500) -> dict[str, int]:
    """The head sequence number of many chains (chain name -> its table) in one round trip per `chunk` chains;
    0 for an empty chain."""
    heads: dict[str, int] = {}
    names = sorted(tables)
    for start in range(0, len(names), chunk):
        parts = [sql.SQL("SELECT {name}::text AS chain, (SELECT max(seq) FROM {table}) AS head").format(
            name=sql.Literal(name), table=tables[name]) for name in names[start:start + chunk]]
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL(" UNION ALL ").join(parts))
            heads.update({row["chain"]: int(row["head"] or 0) for row in _named(cursor, cursor.fetchall())})
    return heads


SIEM_CURSOR_TABLE = "audit_platform_siemcursor"


def siem_cursors_caught_up(heads: dict[int, int]) -> int:
    """Mark cursors (id -> the head just read) as caught up where they still stand at that head, skipping any
    another streamer has locked (never waiting for it); how many."""
    if not heads:
        return 0
    table = sql.Identifier(get_public_schema_name(), SIEM_CURSOR_TABLE)
    query = sql.SQL(
        "UPDATE {table} AS c SET caught_up_at = now(), head_seq = v.head "
        "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::bigint[]) AS head) AS v "
        "WHERE c.id = v.id AND c.last_seq = v.head "
        "AND c.id IN (SELECT id FROM {table} WHERE id = ANY(%s::bigint[]) FOR UPDATE SKIP LOCKED)"
    ).format(table=table)
    ids = list(heads)
    with connection.cursor() as cursor:
        cursor.execute(query, [ids, [heads[i] for i in ids], ids])
        return int(cursor.rowcount)

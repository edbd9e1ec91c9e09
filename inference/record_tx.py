"""One tenant's part of a batch of call records, committed in two round trips to PostgreSQL.

The batch writer's transaction used to take six or more round trips (the connection's health check, the search
path, BEGIN, the chain lock and head, the idempotency and erasure check, the audit INSERT, the usage statement,
COMMIT), each a few hundred microseconds on loopback and several milliseconds on a loaded machine, while the calls
of the batch wait for its commit. Here the statements go in two simple-protocol messages (client-side parameters,
several statements per message):

  1. BEGIN; SET LOCAL search_path; the chain lock and head (atrium_audit_lock_head); which of the batch's request
     ids are already written and which of its users are being erased
  2. the audit entries (one INSERT of a JSON array, chained in Python under the lock); the usage statement
     (inference.services.usage_statement); COMMIT

Isolation and durability are those of audit_append_once + usage_add_many in one transaction: the lock is taken
before the head and the idempotency check are read (each statement of a message reads its own snapshot under READ
COMMITTED), the COMMIT is synchronous, and a failure anywhere rolls the whole transaction back. Both messages
belong to one transaction, so a transaction-mode pooler (PgBouncer) keeps them on one server connection; the
search path is SET LOCAL, so it ends with the transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import connection
from psycopg import sql

from audit import chain
from audit.services import audit_rows_json
from inference.services import usage_statement

if TYPE_CHECKING:
    from inference.records import CallRecord

_COLUMNS = ("seq", "event_id", "timestamp", "event_type", "actor", "model", "input_hash", "output_hash",
            "input_tokens", "output_tokens", "latency_ms", "status", "metadata", "error", "subject_mac", "user_id",
            "personal", "request_id", "prev_mac", "mac")
_FIRST = sql.SQL(
    "BEGIN; SET LOCAL search_path = {}, public; {}"
    "SELECT head_seq, head_mac FROM atrium_audit_lock_head(); "
    "SELECT request_id, NULL FROM audit_auditentry WHERE request_id = ANY(%s) "
    "UNION ALL SELECT NULL, subject_ref FROM audit_erasure WHERE subject_ref = ANY(%s)")
# The batch's entries go as one JSON array, expanded into the table's own column types: one parameter and a
# constant text whatever the batch's size (psycopg quoted twenty values a row and parsed a statement of hundreds of
# placeholders, uncached: a quarter of the batch writer's CPU).
_INSERT = (f"INSERT INTO audit_auditentry ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} "  # noqa: S608 - constant column names
           "FROM jsonb_populate_recordset(NULL::audit_auditentry, %s::jsonb); ")
_first_cache: dict[tuple[str, int | None], bytes] = {}


_timeout_ms: ContextVar[int | None] = ContextVar("record_tx_timeout_ms", default=None)


@contextlib.contextmanager
def bounded(ms: float) -> Iterator[None]:
    """record_tx_commit gives up (and rolls back) after `ms` milliseconds of any statement waiting, e.g. for a
    lock on the audit table: a request thread committing its own record must not hang with it."""
    token = _timeout_ms.set(max(1, int(ms)))
    try:
        yield
    finally:
        _timeout_ms.reset(token)


def usable() -> bool:
    """May the current thread's connection run record_tx_commit? Not inside a transaction Django manages (the
    records would then commit that transaction), and not on a connection in an unknown state."""
    return not connection.in_atomic_block and not connection.needs_rollback


def _audit_key(tenant: Any) -> bytes:
    key = getattr(tenant, "audit_key", None)
    if key:
        return str(key).encode()
    from django_tenants.utils import tenant_context

    with tenant_context(tenant):
        return chain.tenant_key()


def _first(raw: psycopg.Connection[Any], schema: str, timeout: int | None) -> bytes:
    """The first message's text for a tenant (and statement timeout), composed (quoted) once per process."""
    text = _first_cache.get((schema, timeout))
    if text is None:
        limit = sql.SQL("SET LOCAL statement_timeout = {}; ").format(sql.Literal(timeout)) if timeout else sql.SQL("")
        text = _first_cache[(schema, timeout)] = _FIRST.format(sql.Identifier(schema), limit).as_bytes(raw)
    return text


def record_tx_commit(records: list[CallRecord]) -> None:
    """Commit the records of one tenant (audit entries and usage, each request id once); raises if anything
    failed, in which case nothing of it was committed."""
    tenant = records[0].tenant
    key = _audit_key(tenant)
    events = [r.audit for r in records]
    request_ids = [e.request_id for e in events if e.request_id]
    refs = {chain.pseudonym(key, user_id): user_id for user_id in {e.user_id for e in events if e.user_id is not None}}
    connection.ensure_connection()
    raw = connection.connection
    if raw is None or not raw.autocommit:
        raise RuntimeError("record_tx needs a connection outside Django's transactions")
    cursor = psycopg.ClientCursor(raw)
    try:
        timeout = _timeout_ms.get()
        cursor.execute(_first(raw, tenant.schema_name, timeout), [request_ids, list(refs)])
        # The results of BEGIN and the SET LOCALs are skipped by position (asking each result for its description
        # built column objects for nothing); then the head and the request ids found.
        for _ in range(3 if timeout else 2):
            cursor.nextset()
        head_row = cursor.fetchone()
        cursor.nextset()
        found = cursor.fetchall()
        if head_row is None:
            raise RuntimeError("atrium_audit_lock_head() returned no row")
        head = (int(head_row[0]), str(head_row[1])) if head_row[0] is not None else (0, chain.GENESIS)
        present = {str(r[0]) for r in found if r[0] is not None}
        erased = frozenset(refs[str(r[1])] for r in found if r[1] is not None)
        rows, count = audit_rows_json(events, key=key, head=head, present=present, erased=erased)
        statement, params = usage_statement([r.usage for r in records], anonymous=erased)
        text = ""
        if count:
            text = _INSERT
            params = [rows, *params]
        cursor.execute(text + statement + "; COMMIT", params)
    except BaseException:
        with contextlib.suppress(Exception):
            if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raw.execute("ROLLBACK")
        if raw.closed or raw.broken:
            connection.close()  # a fresh one next time
        raise
    finally:
        cursor.close()

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

With session pooling (DATABASE_POOL_MODE=session, the default) the statements are server-side prepared statements:
a connection's first message for a tenant PREPAREs them (in that message: no extra round trip), and the messages
EXECUTE them with the same parameters, so PostgreSQL neither parses, analyses nor plans them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import sql

from audit import chain
from audit.rows import audit_rows_json
from config.db.base import pool_mode
from inference.services import USAGE_CTES_GUARDED, usage_rows_json, usage_statement

if TYPE_CHECKING:
    from inference.records import CallRecord

_COLUMNS = ("seq", "event_id", "timestamp", "event_type", "actor", "model", "input_hash", "output_hash",
            "input_tokens", "output_tokens", "latency_ms", "status", "metadata", "error", "subject_mac", "user_id",
            "personal", "request_id", "prev_mac", "mac")
# (the search path, the statement timeout if any, the PREPAREs of statements this connection does not hold yet)
_BEGIN = "BEGIN; SET LOCAL search_path = {}, public; {}{}"
# The two messages' first takes the chain's append lock and reads its head (migration 0004's function). The one
# message needs the lock only: its guard reads the head itself, under the lock, so it takes the same advisory lock
# (audit.queries.tenant_chain_lock) without the PL/pgSQL call and the head's index scan whose result it discarded.
_LOCK_HEAD = "SELECT head_seq, head_mac FROM atrium_audit_lock_head(); "
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('atrium.audit.' || current_schema())); "
_FOUND = ("SELECT request_id, NULL FROM audit_auditentry WHERE request_id = ANY(%s) "
          "UNION ALL SELECT NULL, subject_ref FROM audit_erasure WHERE subject_ref = ANY(%s)")
_FIRST = sql.SQL(_BEGIN + _LOCK_HEAD + _FOUND)
# The batch's entries go as one JSON array, expanded into the table's own column types: one parameter and a
# constant text whatever the batch's size (psycopg quoted twenty values a row and parsed a statement of hundreds of
# placeholders, uncached: a quarter of the batch writer's CPU).
_INSERT = (f"INSERT INTO audit_auditentry ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} "  # noqa: S608 - constant column names
           "FROM jsonb_populate_recordset(NULL::audit_auditentry, %s::jsonb); ")
# One message when this process knows the chain's head (it wrote the last entry): the entries are chained after
# that head in Python before the lock is taken, and inserted, with the usage, only if under the lock the head is
# still that one, none of the request ids is written yet and none of the users is being erased (`ok`); otherwise
# nothing is written (the empty transaction commits without a WAL flush) and the two messages follow.
_GUARDED = (
    "WITH ok AS (SELECT EXISTS (SELECT 1 FROM (SELECT a.seq, a.mac FROM audit_auditentry a ORDER BY a.seq DESC "  # noqa: S608 - constant clauses only
    "LIMIT 1) h WHERE h.seq = %s AND h.mac = %s) "
    "AND NOT EXISTS (SELECT 1 FROM audit_auditentry WHERE request_id = ANY(%s)) "
    "AND NOT EXISTS (SELECT 1 FROM audit_erasure WHERE subject_ref = ANY(%s)) AS ok), "
    "audit AS (" + _INSERT.replace("::jsonb); ", "::jsonb) WHERE (SELECT ok FROM ok) RETURNING 1), ")
    + USAGE_CTES_GUARDED
    + " SELECT (SELECT ok FROM ok), (SELECT count(*) FROM audit)")
_ONE = sql.SQL(_BEGIN + _LOCK + _GUARDED.replace("{", "{{").replace("}", "}}") + "; COMMIT")
# Server-side prepared statements (session pooling only: DATABASE_POOL_MODE=transaction may run each transaction on
# another server connection, which would not know them). The statements of both paths are prepared on a connection
# by the first message it sends for a tenant (PREPAREs after its SET LOCAL search_path, in the same round trip);
# the messages then EXECUTE them with the same literal parameters. Parse analysis and planning were a third of
# PostgreSQL's CPU for a batch. A tenant has its own names, which keeps its plans valid (a prepared statement is
# analysed again whenever the search path differs from the one it was prepared under).
_PREPARED = {"one": _GUARDED, "found": _FOUND, "audit": _INSERT.removesuffix("; "), "usage": usage_statement([])[0]}
# Statements a connection keeps: 8 tenants' (a tenant's four and their plans take ~0.7 MB of the backend's memory,
# pg_backend_memory_contexts' CachedPlan*; every request thread's connection may lead commits); beyond, unprepared.
_PREPARED_MAX = 8 * len(_PREPARED)
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # connection -> names it holds
# A prepared statement's generic plan is made once and kept until the tables' statistics change: made while a
# tenant's audit table was small, it looked its request ids up by scanning the table, and went on scanning it as it
# grew (bench/writer_pg.py: PostgreSQL's CPU per record rising round after round). Every lookup these statements
# make has an index (request id, sequence number, user id), so their plans are made without sequential scans.
_INDEXED = "SET LOCAL enable_seqscan = off; "
_BEGIN_P = _BEGIN.replace("public; ", "public; " + _INDEXED, 1)
_ONE_P = sql.SQL(_BEGIN_P + _LOCK + "EXECUTE {}(%s, %s, %s, %s, %s, %s); COMMIT")
_FIRST_P = sql.SQL(_BEGIN_P + _LOCK_HEAD + "EXECUTE {}(%s, %s)")


def _numbered(statement: str) -> str:
    """`statement`'s %s placeholders as $1, $2, ... (a prepared statement's parameters, typed from their context as
    the untyped literals the unprepared statement carries are)."""
    parts = statement.split("%s")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


_PREPARE_TEXT = {kind: _numbered(statement).replace("{", "{{").replace("}", "}}")
                 for kind, statement in _PREPARED.items()}
_names_cache: dict[str, dict[str, str]] = {}


def _names(schema: str) -> dict[str, str]:
    names = _names_cache.get(schema)
    if names is None:
        digest = hashlib.blake2s(schema.encode(), digest_size=8).hexdigest()
        names = _names_cache[schema] = {kind: f"atrium_rt_{kind}_{digest}" for kind in _PREPARED}
    return names


def _preparing(raw: psycopg.Connection[Any], schema: str) -> tuple[dict[str, str] | None, list[str]]:
    """(the tenant's prepared statement names on this connection, or None when its statements go unprepared here;
    the kinds the next message must PREPARE first)."""
    if pool_mode() == "transaction":
        return None, []
    held = _prepared.get(raw)
    if held is None:
        held = _prepared[raw] = set()
    names = _names(schema)
    missing = [kind for kind, name in names.items() if name not in held]
    if missing and len(held) + len(missing) > _PREPARED_MAX:
        return None, []
    return names, missing


def _prepares(names: dict[str, str], kinds: list[str]) -> sql.Composable:
    return sql.Composed([sql.SQL("PREPARE {} AS ").format(sql.Identifier(names[kind]))
                         + sql.SQL(_PREPARE_TEXT[kind]) + sql.SQL("; ") for kind in kinds])


def _resync(raw: psycopg.Connection[Any], names: dict[str, str]) -> None:
    """After a failed message that carried PREPAREs: which of them the connection holds (they outlive a rollback)."""
    held = _prepared.get(raw)
    if held is None:
        return
    held.difference_update(names.values())
    try:
        found = raw.execute("SELECT name FROM pg_prepared_statements WHERE name = ANY(%s)",
                            [list(names.values())]).fetchall()
    except Exception:
        _prepared.pop(raw, None)
        return
    held.update(str(row[0]) for row in found)


_first_cache: dict[tuple[int, str, int | None], bytes] = {}  # (id of _FIRST or _ONE, schema, timeout)
# The chain's head (seq, mac) after this process's last commit of a tenant's records, and how many commits take
# the two messages before it guesses again after a wrong guess (another process or an audit_record wrote since).
_heads: dict[str, tuple[int, str]] = {}
_cooling: dict[str, int] = {}
_COOL = 8


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
    # This thread's wrapper looked up once (each `django.db.connection.x` looks it up again: ~2.4 us; 9.4 us a
    # call for the two before).
    wrapper = connections[DEFAULT_DB_ALIAS]
    return not wrapper.in_atomic_block and not wrapper.needs_rollback


def _audit_key(tenant: Any) -> bytes:
    key = getattr(tenant, "audit_key", None)
    if key:
        return str(key).encode()
    from django_tenants.utils import tenant_context

    with tenant_context(tenant):
        return chain.tenant_key()


def _text_array(values: list[str]) -> str:
    """`values` as a PostgreSQL array literal, each element quoted: psycopg's client-side binding of a list looks
    up a dumper for every element and quotes each on its own (100 us for 30 request ids, 17 us this way); the
    statement's text is the same (an untyped literal, typed by the column it is compared with)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _first(raw: psycopg.Connection[Any], schema: str, timeout: int | None, message: sql.SQL = _FIRST,
           name: str = "", prepare: sql.Composable | None = None) -> bytes:
    """The first message's text (or the one message's) for a tenant and statement timeout (and the prepared
    statement it executes), composed (quoted) once per process; with PREPAREs to send first, composed now."""
    text = None if prepare is not None else _first_cache.get((id(message), schema, timeout))
    if text is None:
        limit = sql.SQL("SET LOCAL statement_timeout = {}; ").format(sql.Literal(timeout)) if timeout else sql.SQL("")
        names = [sql.Identifier(name)] if name else []
        text = message.format(sql.Identifier(schema), limit, prepare or sql.SQL(""), *names).as_bytes(raw)
        if prepare is None:
            _first_cache[(id(message), schema, timeout)] = text
    return text


def _literal(value: int | str) -> bytes:
    """`value` as a PostgreSQL literal under standard_conforming_strings (a quote doubled, a backslash as itself),
    untyped as psycopg's client-side binding makes it; the text is UTF-8 (JSON texts hold no NUL)."""
    if isinstance(value, int):
        return b"%d" % value
    return b"'" + value.replace("'", "''").encode() + b"'"


def _bound(raw: psycopg.Connection[Any], message: bytes, params: list[Any]) -> bytes | None:
    """The one message with its parameters in place as literals, or None where psycopg must quote them (a
    connection without standard_conforming_strings or not in UTF-8). psycopg's client-side binding of the
    message's six values (each dispatched to a dumper, its quoting through libpq, the query split at every %s)
    cost 7-40 us of the request thread's CPU, on the c=1 fail_closed path; this costs ~5."""
    info = raw.info
    if info.encoding != "utf-8" or info.parameter_status("standard_conforming_strings") != "on":
        return None
    if any(not isinstance(v, int | str) or isinstance(v, bool) or (isinstance(v, str) and "\0" in v)
           for v in params):
        return None
    return message % tuple(_literal(v) for v in params)


def record_tx_commit(records: list[CallRecord]) -> None:
    """Commit the records of one tenant (audit entries and usage, each request id once); raises if anything
    failed, in which case nothing of it was committed."""
    tenant = records[0].tenant
    key = _audit_key(tenant)
    events = [r.audit for r in records]
    request_ids = [e.request_id for e in events if e.request_id]
    refs = {chain.pseudonym(key, user_id): user_id for user_id in {e.user_id for e in events if e.user_id is not None}}
    ids_array, refs_array = _text_array(request_ids), _text_array(list(refs))
    wrapper = connections[DEFAULT_DB_ALIAS]
    wrapper.ensure_connection()
    raw = wrapper.connection
    if raw is None or not raw.autocommit:
        raise RuntimeError("record_tx needs a connection outside Django's transactions")
    cursor = psycopg.ClientCursor(raw)
    schema = tenant.schema_name
    names: dict[str, str] | None = None
    missing: list[str] = []
    try:
        timeout = _timeout_ms.get()
        names, missing = _preparing(raw, schema)
        # the results of BEGIN, the SET LOCALs (search path, statement timeout, sequential scans) and the PREPAREs
        skip = (3 if timeout else 2) + (1 if names is not None else 0) + len(missing)
        guess = _heads.get(schema)
        cooling = _cooling.get(schema, 0)
        if cooling:
            _cooling[schema] = cooling - 1
        elif guess is not None and guess[0] > 0:
            rows, count, after = audit_rows_json(events, key=key, head=guess, present=set(), erased=frozenset())
            message = _first(raw, schema, timeout, _ONE) if names is None else _first(
                raw, schema, timeout, _ONE_P, names["one"], _prepares(names, missing) if missing else None)
            params = [guess[0], guess[1], ids_array, refs_array, rows, usage_rows_json([r.usage for r in records])]
            bound = _bound(raw, message, params)
            if bound is not None:
                cursor.execute(bound)
            else:
                cursor.execute(message, params)
            for _ in range(skip):
                cursor.nextset()
            if missing and names is not None:
                _prepared[raw].update(names.values())
                skip -= len(missing)  # prepared: the next message carries no PREPARE
                missing = []
            cursor.nextset()
            ok = cursor.fetchone()
            if ok is not None and ok[0]:
                _heads[schema] = after
                return
            _heads.pop(schema, None)
            _cooling[schema] = _COOL
        message = _first(raw, schema, timeout) if names is None else _first(
            raw, schema, timeout, _FIRST_P, names["found"], _prepares(names, missing) if missing else None)
        cursor.execute(message, [ids_array, refs_array])
        if missing and names is not None:
            _prepared[raw].update(names.values())
            missing = []
        # The results of BEGIN, the SET LOCALs and any PREPAREs are skipped by position (asking each result for its
        # description built column objects for nothing); then the head and the request ids found.
        for _ in range(skip):
            cursor.nextset()
        head_row = cursor.fetchone()
        cursor.nextset()
        found = cursor.fetchall()
        if head_row is None:
            raise RuntimeError("atrium_audit_lock_head() returned no row")
        head = (int(head_row[0]), str(head_row[1])) if head_row[0] is not None else (0, chain.GENESIS)
        present = {str(r[0]) for r in found if r[0] is not None}
        erased = frozenset(refs[str(r[1])] for r in found if r[1] is not None)
        rows, count, after = audit_rows_json(events, key=key, head=head, present=present, erased=erased)
        statement, params = usage_statement([r.usage for r in records], anonymous=erased)
        if names is not None:
            statement = f"EXECUTE {names['usage']}(%s)"
        text = ""
        if count:
            text = _INSERT if names is None else f"EXECUTE {names['audit']}(%s); "
            params = [rows, *params]
        cursor.execute(text + statement + "; COMMIT", params)
        _heads[schema] = after
    except BaseException as error:
        with contextlib.suppress(Exception):
            if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raw.execute("ROLLBACK")
        if raw.closed or raw.broken:
            wrapper.close()  # a fresh one next time
        elif names is not None and (missing or isinstance(error, psycopg.errors.InvalidSqlStatementName)):
            _resync(raw, names)  # the PREPAREs of the failed message, or a prepared statement gone
        raise
    finally:
        cursor.close()

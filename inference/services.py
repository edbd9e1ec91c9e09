"""Writes on conversations and usage that more than one caller needs (gateway, GDPR jobs, retention)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.db import connection

from config import jsonfast

# Adds a row's counts to the existing (user, day, model, provider, API key) row, if any.
_USAGE_UPSERT = (
    "ON CONFLICT (user_id, day, model, provider, api_key) DO UPDATE SET "
    "requests = inference_usagedaily.requests + EXCLUDED.requests, "
    "errors = inference_usagedaily.errors + EXCLUDED.errors, "
    "input_tokens = inference_usagedaily.input_tokens + EXCLUDED.input_tokens, "
    "output_tokens = inference_usagedaily.output_tokens + EXCLUDED.output_tokens, "
    "cache_read_tokens = inference_usagedaily.cache_read_tokens + EXCLUDED.cache_read_tokens, "
    "cache_write_tokens = inference_usagedaily.cache_write_tokens + EXCLUDED.cache_write_tokens, "
    "cost_micros = inference_usagedaily.cost_micros + EXCLUDED.cost_micros"
)
_DAILY_COLUMNS = ("user_id, day, model, provider, api_key, requests, errors, input_tokens, output_tokens, "
                  "cache_read_tokens, cache_write_tokens, cost_micros")


@dataclass(frozen=True)
class UsageCount:
    """One call's contribution to its user's usage row of the day, keyed by the call's request id."""

    user_id: int | None
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    error: bool
    request_id: str = ""
    day: date | None = None  # the call's UTC day (a record replayed after midnight still counts on its day)
    charged_tokens: int = 0  # what the call charged to the day's quota counters
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_micros: int = 0  # priced when the call was recorded (inference.catalog.pricing); never recomputed
    api_key: str = ""  # the API key's prefix, "" for the chat and bearer tokens


def usage_add_many(counts: list[UsageCount], *, anonymous: frozenset[int] = frozenset()) -> set[str]:
    """Count calls in their days' usage rows, exactly once each; returns the request ids counted now.

    One statement: each call's ledger row (inference_usagerecord, unique request id) is inserted unless it exists,
    and only the rows inserted now are added to the daily rows, so a retried or replayed batch cannot count a call
    twice. Users in `anonymous` (their erasure has started) and users deleted since the call count anonymously.
    """
    if not counts:
        return set()
    statement, params = usage_statement(counts, anonymous=anonymous)
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return {str(row[0]) for row in cursor.fetchall()}


def usage_statement(counts: list[UsageCount], *, anonymous: frozenset[int] = frozenset()) -> tuple[str, list[Any]]:
    """usage_add_many's statement and parameters (inference.record_tx sends it with the audit entries).

    The rows go as one JSON array, expanded by jsonb_populate_recordset into the ledger's own column types: the
    statement's text is the same for any number of rows, and one parameter replaces thirteen a row (quoting and
    parsing a statement of hundreds of placeholders was most of a batch writer's CPU)."""
    return _USAGE_STATEMENT, [usage_rows_json(counts, anonymous=anonymous)]


def usage_rows_json(counts: list[UsageCount], *, anonymous: frozenset[int] = frozenset()) -> str:
    """The usage rows as the JSON array the usage statement expands."""
    today = datetime.now(UTC).date()
    rows = []
    for count in counts:
        rows.append({"request_id": count.request_id or f"anon_{uuid.uuid4().hex}",
                     "user_id": None if count.user_id in anonymous else count.user_id,
                     "day": (count.day or today).isoformat(), "model": count.model, "provider": count.provider,
                     "input_tokens": int(count.input_tokens), "output_tokens": int(count.output_tokens),
                     "charged_tokens": int(count.charged_tokens), "error": bool(count.error),
                     "cache_read_tokens": int(count.cache_read_tokens),
                     "cache_write_tokens": int(count.cache_write_tokens), "cost_micros": int(count.cost_micros),
                     "api_key": count.api_key or ""})
    return jsonfast.dumps_text(rows)


def _usage_ctes(where: str = "") -> str:
    """The usage statement's two data-modifying CTEs (`new`: the ledger rows inserted now; `daily`: them added to
    the daily rows); `where` filters the rows to insert (record_tx's one-message commit guards them)."""
    return (
        "new AS (INSERT INTO inference_usagerecord (request_id, user_id, day, model, provider, "  # noqa: S608 - constant clauses only
        "input_tokens, output_tokens, charged_tokens, error, cache_read_tokens, cache_write_tokens, cost_micros, "
        "api_key) SELECT r.request_id, (SELECT id FROM auth_user WHERE id = r.user_id), r.day, r.model, r.provider, "
        "r.input_tokens, r.output_tokens, r.charged_tokens, r.error, r.cache_read_tokens, r.cache_write_tokens, "
        f"r.cost_micros, r.api_key FROM jsonb_populate_recordset(NULL::inference_usagerecord, %s::jsonb) AS r {where}"
        "ON CONFLICT (request_id) DO NOTHING RETURNING request_id, user_id, day, model, provider, input_tokens, "
        "output_tokens, error, cache_read_tokens, cache_write_tokens, cost_micros, api_key), "
        f"daily AS (INSERT INTO inference_usagedaily ({_DAILY_COLUMNS}) "
        "SELECT user_id, day, model, provider, api_key, count(*), sum(error::int), sum(input_tokens), "
        "sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_micros) "
        f"FROM new GROUP BY 1, 2, 3, 4, 5 {_USAGE_UPSERT})"
    )


_USAGE_STATEMENT = f"WITH {_usage_ctes()} SELECT request_id FROM new"  # noqa: S608 - constant clauses only
# For inference.record_tx: the usage CTEs inserting only when its `ok` CTE (defined before them) is true.
USAGE_CTES_GUARDED = _usage_ctes("WHERE (SELECT ok FROM ok) ")


def usage_anonymise(user_id: int) -> int:
    """Fold a user's usage rows into the anonymous (user NULL) rows: statistics survive, the link to them does not.

    Runs before a user row is deleted (the foreign key would otherwise collide with an existing anonymous row).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO inference_usagedaily ({_DAILY_COLUMNS}) SELECT NULL, day, model, provider, api_key, "  # noqa: S608 - constant clause
            "requests, errors, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_micros "
            f"FROM inference_usagedaily WHERE user_id = %s {_USAGE_UPSERT}",
            [user_id],
        )
        cursor.execute("DELETE FROM inference_usagedaily WHERE user_id = %s", [user_id])
        removed = int(cursor.rowcount)
        cursor.execute("UPDATE inference_usagerecord SET user_id = NULL WHERE user_id = %s", [user_id])
        return removed


def _user_pre_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.pk is not None:
        usage_anonymise(instance.pk)

"""The inference app's raw SQL that the ORM cannot express, composed with psycopg.sql and read back by column name.

Here: reads across tenant schemas (the platform's usage page reads every tenant's daily usage table, which no
tenant-bound ORM query can address). Schema and table names go through psycopg.sql.Identifier; values are
parameters. tests/inference/test_queries.py round-trips each column list against the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db import connection
from psycopg import sql

# The sums usage_totals reads, by name: (column of inference_usagedaily, name of the total).
USAGE_TOTAL_COLUMNS = (("requests", "requests"), ("errors", "errors"), ("input_tokens", "input_tokens"),
                       ("output_tokens", "output_tokens"))


@dataclass(frozen=True)
class UsageTotals:
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int


def usage_totals(schema: str, since: date) -> UsageTotals:
    """A tenant's requests, errors and tokens from `since` (inclusive) on, from its daily usage table."""
    query = sql.SQL("SELECT {sums} FROM {table} WHERE day >= %s").format(
        sums=sql.SQL(", ").join(
            sql.SQL("COALESCE(SUM({}), 0) AS {}").format(sql.Identifier(column), sql.Identifier(name))
            for column, name in USAGE_TOTAL_COLUMNS),
        table=sql.Identifier(schema, "inference_usagedaily"),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [since])
        row = cursor.fetchone()
        named = dict(zip((column.name for column in cursor.description), row, strict=True))
    return UsageTotals(**{name: int(named[name]) for _column, name in USAGE_TOTAL_COLUMNS})

"""Writes on conversations and usage that more than one caller needs (gateway, GDPR jobs, retention)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection

# Adds a row's counts to the existing (user, day, model, provider) row, if any.
_USAGE_UPSERT = (
    "ON CONFLICT (user_id, day, model, provider) DO UPDATE SET "
    "requests = inference_usagedaily.requests + EXCLUDED.requests, "
    "errors = inference_usagedaily.errors + EXCLUDED.errors, "
    "input_tokens = inference_usagedaily.input_tokens + EXCLUDED.input_tokens, "
    "output_tokens = inference_usagedaily.output_tokens + EXCLUDED.output_tokens"
)


@dataclass(frozen=True)
class UsageCount:
    """One call's contribution to its user's usage row of the day."""

    user_id: int | None
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    error: bool


def usage_add_many(counts: list[UsageCount]) -> None:
    """Count several calls in today's usage rows (UTC) with one statement (one row per user, model, provider)."""
    if not counts:
        return
    day = datetime.now(UTC).date()
    rows: dict[tuple[int | None, str, str], list[int]] = {}
    for count in counts:
        row = rows.setdefault((count.user_id, count.model, count.provider), [0, 0, 0, 0])
        row[0] += 1
        row[1] += int(count.error)
        row[2] += int(count.input_tokens)
        row[3] += int(count.output_tokens)
    # A user deleted since the call (a GDPR deletion) counts as anonymous, as usage_anonymise would have made it.
    values = ", ".join(["((SELECT id FROM auth_user WHERE id = %s), %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for (user_id, model, provider), (requests, errors, input_tokens, output_tokens) in rows.items():
        params += [user_id, day, model, provider, requests, errors, input_tokens, output_tokens]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inference_usagedaily (user_id, day, model, provider, requests, errors, input_tokens, "  # noqa: S608 - placeholders only
            f"output_tokens) VALUES {values} {_USAGE_UPSERT}",
            params,
        )


def usage_anonymise(user_id: int) -> int:
    """Fold a user's usage rows into the anonymous (user NULL) rows: statistics survive, the link to them does not.

    Runs before a user row is deleted (the foreign key would otherwise collide with an existing anonymous row).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inference_usagedaily (user_id, day, model, provider, requests, errors, input_tokens, "  # noqa: S608 - constant clause
            "output_tokens) SELECT NULL, day, model, provider, requests, errors, input_tokens, output_tokens "
            f"FROM inference_usagedaily WHERE user_id = %s {_USAGE_UPSERT}",
            [user_id],
        )
        cursor.execute("DELETE FROM inference_usagedaily WHERE user_id = %s", [user_id])
        return int(cursor.rowcount)


def _user_pre_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.pk is not None:
        usage_anonymise(instance.pk)

"""Writes on conversations and usage that more than one caller needs (gateway, GDPR jobs, retention)."""

from __future__ import annotations

from typing import Any

from django.db import connection


def usage_anonymise(user_id: int) -> int:
    """Fold a user's usage rows into the anonymous (user NULL) rows: statistics survive, the link to them does not.

    Runs before a user row is deleted (the foreign key would otherwise collide with an existing anonymous row).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inference_usagedaily (user_id, day, model, provider, requests, errors, input_tokens, "
            "output_tokens) SELECT NULL, day, model, provider, requests, errors, input_tokens, output_tokens "
            "FROM inference_usagedaily WHERE user_id = %s "
            "ON CONFLICT (user_id, day, model, provider) DO UPDATE SET "
            "requests = inference_usagedaily.requests + EXCLUDED.requests, "
            "errors = inference_usagedaily.errors + EXCLUDED.errors, "
            "input_tokens = inference_usagedaily.input_tokens + EXCLUDED.input_tokens, "
            "output_tokens = inference_usagedaily.output_tokens + EXCLUDED.output_tokens",
            [user_id],
        )
        cursor.execute("DELETE FROM inference_usagedaily WHERE user_id = %s", [user_id])
        return int(cursor.rowcount)


def _user_pre_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.pk is not None:
        usage_anonymise(instance.pk)

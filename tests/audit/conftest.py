"""Helpers for the GDPR tests: a user with data everywhere the product keeps personal data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import connection


def user_with_data(user: Any, *, conversations: int = 3, models: tuple[str, ...] = (
        "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-5-5"), messages_per: int = 2,
        ip: str = "192.0.2.1") -> dict[str, int]:
    """Conversations in several models, a preference, a consent, usage, an API key, audit entries (with IP)."""
    from access.services import api_key_create
    from audit.models import ProcessingNotice
    from audit.services import audit_record, consent_give
    from inference.models import ChatPreference, Conversation, Message

    made = {"conversations": 0, "messages": 0}
    for i in range(conversations):
        model = models[i % len(models)]
        conversation = Conversation.objects.create(user=user, model=model, title=f"{user.username} chat {i}")
        for j in range(messages_per):
            role = "user" if j % 2 == 0 else "assistant"
            Message.objects.create(conversation=conversation, role=role, model=model,
                                   content=[{"type": "text", "text": f"{user.username} says {i}.{j}"}])
            made["messages"] += 1
        made["conversations"] += 1
    ChatPreference.objects.create(user=user, default_model=models[0], settings={"theme": "dark"})
    notice = ProcessingNotice.objects.order_by("-version").first() or ProcessingNotice.objects.create(
        version=1, text="Test notice")
    consent_give(user, notice)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO inference_usagedaily (user_id, day, model, provider, requests, errors, "
                       "input_tokens, output_tokens) VALUES (%s, %s, %s, 'anthropic', 4, 0, 100, 200)",
                       [user.pk, datetime.now(UTC).date(), models[0]])
    api_key_create(user=user, name="laptop")
    from access.audit_hooks import access_audit

    access_audit("login_failed", status="error", metadata={"method": "password"}, attempted_username=user.username)
    access_audit("role_change", metadata={"source": "admin", "added": ["basic_user"]}, subject_id=user.pk)
    audit_record(event_type="login", user=user, personal={"username": user.username, "ip": ip,
                                                          "user_agent": "pytest"})
    return made


def tables_mentioning(value: str) -> list[str]:
    """Every table of the current tenant schema with a row whose text form contains `value`."""
    schema = connection.schema_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                       "AND table_type = 'BASE TABLE'", [schema])
        tables = [row[0] for row in cursor.fetchall()]
        found = []
        for table in tables:
            cursor.execute(f'SELECT 1 FROM "{schema}"."{table}" t WHERE t::text ILIKE %s LIMIT 1',  # noqa: S608
                           [f"%{value}%"])
            if cursor.fetchone():
                found.append(table)
    return found


def columns_holding_user_id(user_id: int) -> list[str]:
    """Every integer column of the tenant schema that names a user (…user_id, subject_id, auth_user.id) = user_id."""
    schema = connection.schema_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s "
                       "AND data_type IN ('integer', 'bigint') AND (column_name LIKE '%%user_id' OR "
                       "column_name IN ('subject_id', 'requested_by_id', 'created_by_id') OR "
                       "(table_name = 'auth_user' AND column_name = 'id'))", [schema])
        found = []
        for table, column in cursor.fetchall():
            cursor.execute(f'SELECT 1 FROM "{schema}"."{table}" WHERE "{column}" = %s LIMIT 1',  # noqa: S608
                           [user_id])
            if cursor.fetchone():
                found.append(f"{table}.{column}")
    return found

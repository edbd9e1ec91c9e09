"""Writing the platform audit trail. Call inside the transaction of the change being recorded."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.chain import normalise
from audit.platform.chain import platform_entry_mac, platform_key, platform_lock_head, table
from audit.platform.models import PlatformAuditEntry


def platform_audit_record(*, actor: str, action: str, target: str, tenant_schema: str | None = None,
                          metadata: dict[str, Any] | None = None) -> PlatformAuditEntry:
    """Append one entry to the platform chain (public schema), whatever schema the connection is on.

    Runs in the caller's transaction (no savepoint): if the change it records rolls back, so does the entry, and
    an entry that cannot be written fails the change. Never put secret values in `metadata`: name what changed.
    """
    if not actor or not action:
        raise ValueError("a platform audit entry needs an actor and an action")
    key = platform_key()
    with transaction.atomic(savepoint=False):
        last_seq, prev = platform_lock_head()
        fields: dict[str, Any] = {
            "seq": last_seq + 1,
            "event_id": uuid.uuid4(),
            "timestamp": timezone.now(),
            "actor": actor[:200],
            "action": action[:60],
            "target": (target or "")[:300],
            "tenant_schema": (tenant_schema or "")[:63],
            "metadata": normalise(metadata or {}),
        }
        mac = platform_entry_mac(key, prev, fields)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table()} (seq, event_id, timestamp, actor, action, target, tenant_schema, "  # noqa: S608
                "metadata, prev_mac, mac) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id",
                [fields["seq"], fields["event_id"], fields["timestamp"], fields["actor"], fields["action"],
                 fields["target"], fields["tenant_schema"], json.dumps(fields["metadata"]), prev, mac],
            )
            row = cursor.fetchone()
    entry = PlatformAuditEntry(id=row[0] if row else None, prev_mac=prev, mac=mac, **fields)
    entry._state.adding = False
    entry._state.db = "default"
    return entry

"""The platform chain: its key, its lock, and the fields its MACs cover (same rules as audit.chain).

mac(n) = HMAC-SHA-256(ATRIUM_PLATFORM_AUDIT_KEY, prev_mac || canonical JSON of entry n's chained fields).
The key comes from the environment, never from the database: someone who can write the database cannot forge a
platform entry. Every statement names the public schema, so the chain is the same from any schema context.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django_tenants.utils import get_public_schema_name

from audit.chain import canonical
from audit.verify import GENESIS, ChainWalk, VerifyResult

CHAINED = ("seq", "event_id", "timestamp", "actor", "action", "target", "tenant_schema", "metadata")
TABLE = "audit_platform_platformauditentry"
LOCK = "atrium.audit.platform"


def platform_key() -> bytes:
    key = str(getattr(settings, "ATRIUM_PLATFORM_AUDIT_KEY", "") or "")
    if not key:
        raise ImproperlyConfigured("ATRIUM_PLATFORM_AUDIT_KEY is not set; the platform audit trail needs it")
    return key.encode()


def table() -> str:
    """The schema-qualified table (constant names: safe to format into SQL)."""
    return f'"{get_public_schema_name()}".{TABLE}'


def platform_entry_mac(key: bytes, prev_mac: str, fields: dict[str, Any]) -> str:
    body = {name: fields[name] for name in CHAINED}
    body["event_id"] = str(body["event_id"])
    body["timestamp"] = body["timestamp"].isoformat(timespec="microseconds")
    return hmac.new(key, prev_mac.encode() + canonical(body), hashlib.sha256).hexdigest()


def platform_lock_head() -> tuple[int, str]:
    """Serialise appends to the platform chain until the transaction ends; return its head (seq, mac)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [LOCK])
        cursor.execute(f"SELECT seq, mac FROM {table()} ORDER BY seq DESC LIMIT 1")  # noqa: S608 - constant
        row = cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def platform_chain_verify(batch: int = 20_000, *, checkpoints: bool = True) -> VerifyResult:
    """Walk the platform chain in order and compare it with its newest checkpoint (as audit.chain.chain_verify
    does for a tenant's); checkpoint it when intact."""
    from audit.platform.checkpoints import PLATFORM, checkpoint_latest, checkpoint_take

    key = platform_key()
    checkpoint, problems = checkpoint_latest(PLATFORM, key) if checkpoints else (None, [])
    walk = ChainWalk(checkpoint, problems)
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT seq, event_id, timestamp, actor, action, target, tenant_schema, metadata, "  # noqa: S608
                           f"prev_mac, mac FROM {table()} WHERE seq > %s ORDER BY seq LIMIT %s", [last, batch])
            rows = cursor.fetchall()
        if not rows:
            break
        for seq, event_id, ts, actor, action, target, tenant_schema, metadata, prev_mac, mac in rows:
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            fields = {"seq": seq, "event_id": event_id, "timestamp": ts, "actor": actor, "action": action,
                      "target": target, "tenant_schema": tenant_schema, "metadata": metadata}
            walk.feed(seq=seq, prev_mac=prev_mac, mac=mac,
                      content_ok=hmac.compare_digest(platform_entry_mac(key, prev_mac, fields), mac))
        last = rows[-1][0]
    result = walk.finish()
    if checkpoints and result.ok:
        checkpoint_take(chain=PLATFORM, chain_key=key, reason="verify", head=(result.head_seq, result.head_mac))
    return result

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
from django_tenants.utils import get_public_schema_name

from audit import queries
from audit.chain import canonical
from audit.verify import GENESIS, ChainWalk, VerifyResult

CHAINED = ("seq", "event_id", "timestamp", "actor", "action", "target", "tenant_schema", "metadata")
TABLE = "audit_platform_platformauditentry"
LOCK = "atrium.audit.platform"
# What platform_chain_verify reads of each entry: the chained fields and the links.
ENTRY_COLUMNS = (*CHAINED, "prev_mac", "mac")


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
    queries.advisory_xact_lock(LOCK)
    return queries.chain_head(queries.platform_table()) or (0, GENESIS)


def platform_chain_verify(batch: int = 20_000, *, checkpoints: bool = True) -> VerifyResult:
    """Walk the platform chain in order and compare it with its newest checkpoint (as audit.chain.chain_verify
    does for a tenant's); checkpoint it when intact."""
    from audit.platform.checkpoints import PLATFORM, checkpoint_latest, checkpoint_take

    key = platform_key()
    checkpoint, problems = checkpoint_latest(PLATFORM, key) if checkpoints else (None, [])
    walk = ChainWalk(checkpoint, problems)
    last = 0
    while True:
        rows = queries.chain_entries(queries.platform_table(), ENTRY_COLUMNS, after_seq=last, limit=batch)
        if not rows:
            break
        for row in rows:
            fields = {name: row[name] for name in CHAINED}
            if isinstance(fields["metadata"], str):
                fields["metadata"] = json.loads(fields["metadata"])
            walk.feed(seq=row["seq"], prev_mac=row["prev_mac"], mac=row["mac"],
                      content_ok=hmac.compare_digest(platform_entry_mac(key, row["prev_mac"], fields), row["mac"]))
        last = rows[-1]["seq"]
    result = walk.finish()
    if checkpoints and result.ok:
        checkpoint_take(chain=PLATFORM, chain_key=key, reason="verify", head=(result.head_seq, result.head_mac))
    return result

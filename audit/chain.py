"""The audit hash chain: keyed MACs, serialised appends, verification.

mac(n) = HMAC-SHA-256(tenant audit key, prev_mac || canonical JSON of entry n's chained fields).
Personal columns are chained through `subject_mac` = HMAC(key, canonical {user_id, personal}) so that a GDPR
deletion can blank them without breaking the chain; every other column is covered directly.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import connection

from audit import queries
from audit.verify import (
    GENESIS,
    ChainWalk,
    VerifyResult,
    canonical,
    canonical_bytes_plain,
    canonical_text,
    canonical_text_plain,
    entry_mac_of,
    request_id_problem,
)
from config.tenant_cache import TenantCache

__all__ = ["GENESIS", "VerifyResult", "canonical", "canonical_text", "chain_verify"]

CHAINED = ("seq", "event_id", "timestamp", "event_type", "actor", "model", "input_hash", "output_hash",
           "input_tokens", "output_tokens", "latency_ms", "status", "metadata", "error", "subject_mac")


_audit_keys: TenantCache[str] = TenantCache("audit_keys")


def tenant_key() -> bytes:
    """The current tenant's audit key (schema_context() leaves only a schema name: the row is looked up)."""
    tenant = getattr(connection, "tenant", None)
    schema = getattr(tenant, "schema_name", None) or getattr(connection, "schema_name", "public")
    if schema == "public":
        raise RuntimeError("audit entries live in a tenant schema; no tenant is active")
    key = getattr(tenant, "audit_key", None)
    if not key:
        from tenants.models import Tenant

        def lookup() -> str | None:
            found: str | None = Tenant.objects.filter(schema_name=schema).values_list("audit_key", flat=True).first()
            return found

        # Cached per process (tenants rows live in the public schema, whose changes empty the entry).
        key = _audit_keys.get_or_load("public", schema, lookup)
        if not key:
            raise RuntimeError(f"no audit key for schema {schema!r}")
    return str(key).encode()


# HMAC-SHA-256 (RFC 2104, as the hmac module builds it where OpenSSL's is missing: H((K ^ opad) || H((K ^ ipad) || m)),
# K the key, or its digest if longer than a block, padded to SHA-256's 64-byte block), its two keyed SHA-256 states
# made once per audit key and copied for each MAC: 1.44 -> 0.53 us a short MAC against hmac.digest, which keys a new
# HMAC each time (its pads hashed again, OpenSSL's digest looked up by name); a copied hmac.HMAC costs 0.87 us, its
# Python wrapper's. The same MACs (tests/audit/test_canonical_orjson.py checks them against hmac.digest).
_keyed: dict[bytes, tuple[Any, Any]] = {}
_KEYED_MAX = 256
_BLOCK = 64  # SHA-256's block size


def mac_hex(key: bytes, data: bytes) -> str:
    """hmac.digest(key, data, "sha256").hex()."""
    pads = _keyed.get(key)
    if pads is None:
        block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        if len(_keyed) >= _KEYED_MAX:
            _keyed.clear()
        pads = _keyed[key] = (hashlib.sha256(block.translate(hmac.trans_36)),
                              hashlib.sha256(block.translate(hmac.trans_5C)))
    inner = pads[0].copy()
    inner.update(data)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def keyed_hash(key: bytes, value: str) -> str:
    return mac_hex(key, value.encode())


@functools.lru_cache(maxsize=4096)
def pseudonym(key: bytes, user_id: int | None) -> str:
    """The user's pseudonym under a tenant's audit key (remembered: every record of a call computes it twice, for
    its actor and for the erasure check)."""
    return "" if user_id is None else keyed_hash(key, f"user:{user_id}")[:32]


def json_text(value: Any) -> tuple[Any, str]:
    """(normalise(value), its canonical text): the value as an entry stores it and the JSON its MAC covers, made
    once (audit.rows.audit_rows_json writes the same text into the row)."""
    if _json_native(value, 0, True):
        return value, canonical_text_plain(value)
    if _json_native(value, 0):
        return value, canonical_text(value)
    normal = json.loads(canonical_text(value))
    return normal, canonical_text(normal)


def canonical_fast(value: Any) -> str:
    """canonical_text(value): by orjson when the value is one it writes as json does (audit.verify.
    canonical_text_plain), else by json."""
    return canonical_text_plain(value) if _json_native(value, 0, True) else canonical_text(value)


def canonical_fast_bytes(value: Any) -> bytes:
    """canonical_fast(value).encode(), without the str in between when orjson writes it (its own UTF-8)."""
    return canonical_bytes_plain(value) if _json_native(value, 0, True) else canonical_text(value).encode()


def normalise(value: Any) -> Any:
    """What the value reads back as from jsonb, so the MAC computed on write equals the one on verify. A value
    made of JSON's own types only (an audit entry's metadata and personal fields, nearly always) already is: it
    is returned as it is (two JSON passes less per entry); anything else goes through JSON."""
    if _json_native(value, 0):
        return value
    return json.loads(canonical(value))


_SCALARS = frozenset({str, int, bool, type(None)})


def _json_native(value: Any, depth: int, plain: bool = False) -> bool:
    """Does `value` read back from JSON as an equal value of the same types (dicts with str keys, lists, str,
    int, bool, None, finite floats; exact types, no subclasses such as enums or lazy strings)? (Scalar members
    are checked in the loops, without a call each.) `plain`: and is every float one that repr writes without an
    exponent (0, or 1e-4 <= |f| < 1e16), so that orjson writes the value as json does (canonical_fast)?"""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is float:
        return (value == 0 or 1e-4 <= abs(value) < 1e16) if plain else math.isfinite(value)
    if depth > 16:
        return False
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str:
                return False
            if type(v) not in _SCALARS and not _json_native(v, depth + 1, plain):
                return False
        return True
    if kind is list:
        for v in value:  # noqa: SIM110 - a loop, not all() over a generator: a third less CPU for a payload
            if type(v) not in _SCALARS and not _json_native(v, depth + 1, plain):
                return False
        return True
    return False


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


timestamp_text = _ts  # an entry's time as its MAC covers it

def subject_mac(key: bytes, user_id: int | None, personal: dict[str, Any]) -> str:
    return hmac.digest(key, canonical({"user_id": user_id, "personal": personal}), "sha256").hex()


def subject_mac_text(key: bytes, user_id: int | None, personal_text: str) -> str:
    """subject_mac, with the personal fields' canonical text already made (json_text)."""
    uid = "null" if user_id is None else str(user_id) if type(user_id) is int else canonical_text(user_id)
    return mac_hex(key, f'{{"personal":{personal_text},"user_id":{uid}}}'.encode())


def chained_body(fields: dict[str, Any]) -> dict[str, Any]:
    """The chained fields of an entry as its MAC covers them (JSON values: the id and time as text)."""
    body = {name: fields[name] for name in CHAINED}
    body["event_id"] = str(body["event_id"])
    body["timestamp"] = _ts(body["timestamp"])
    return body


def entry_mac(key: bytes, prev_mac: str, fields: dict[str, Any]) -> str:
    return entry_mac_of(key, prev_mac, chained_body(fields))


def chain_lock() -> None:
    """Serialise appends in this schema until the transaction ends: the chain never forks."""
    queries.tenant_chain_lock()


def chain_lock_head() -> tuple[int, str]:
    """Take the append lock (as chain_lock) and read the chain's last (seq, mac) in one round trip: a function in
    each tenant schema (migration 0004)."""
    return queries.tenant_chain_lock_head() or (0, GENESIS)


# What chain_verify reads of each entry: the chained fields, the links and the personal fields.
ENTRY_COLUMNS = (*CHAINED, "prev_mac", "mac", "user_id", "personal", "redacted_at", "request_id")


def _rows(batch: int) -> Iterator[dict[str, Any]]:
    last = 0
    while True:
        rows = queries.chain_entries(queries.tenant_table(), ENTRY_COLUMNS, after_seq=last, limit=batch)
        if not rows:
            return
        yield from rows
        last = rows[-1]["seq"]


def chain_verify(batch: int = 20_000, *, checkpoints: bool = True) -> VerifyResult:
    """Walk the current schema's chain in order and compare its head with its newest signed checkpoint.

    Detects gaps, edited, forged, inserted and reordered entries, and (against the checkpoint) a deleted tail,
    truncation and a chain rewritten with the key. A chain found intact is checkpointed (audit.platform.checkpoints).
    """
    from audit.platform.checkpoints import checkpoint_latest, checkpoint_take

    key = tenant_key()
    schema = str(getattr(connection, "schema_name", ""))
    checkpoint, problems = checkpoint_latest(schema, key) if checkpoints else (None, [])
    walk = ChainWalk(checkpoint, problems)
    for row in _rows(batch):
        fields = {name: row[name] for name in CHAINED}
        if isinstance(fields["metadata"], str):
            fields["metadata"] = json.loads(fields["metadata"])
        personal = json.loads(row["personal"]) if isinstance(row["personal"], str) else row["personal"]
        seq, smac, prev_mac, mac = row["seq"], row["subject_mac"], row["prev_mac"], row["mac"]
        user_id, redacted_at = row["user_id"], row["redacted_at"]
        request_id = row["request_id"]
        extra = None
        if redacted_at is None and not hmac.compare_digest(subject_mac(key, user_id, personal or {}), smac):
            extra = "personal fields do not match their MAC (edited)"
        elif redacted_at is not None and (user_id is not None or personal):
            extra = "redacted entry still holds personal fields"
        extra = request_id_problem(request_id, fields["metadata"]) or extra
        walk.feed(seq=seq, prev_mac=prev_mac, mac=mac, extra=extra,
                  content_ok=hmac.compare_digest(entry_mac(key, prev_mac, fields), mac))
    result = walk.finish()
    if checkpoints and result.ok:
        checkpoint_take(chain=schema, chain_key=key, reason="verify", head=(result.head_seq, result.head_mac))
    return result

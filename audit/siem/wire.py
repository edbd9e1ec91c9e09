"""What a SIEM receives for each audit entry, and how it is framed for each transport.

Every entry travels as one JSON document: its stable id (`<chain>/<seq>/<mac>`, the same however often it is sent),
the chain (a tenant's schema, or `public` for the platform trail), the chain key's fingerprint, the sequence
number, the chained fields exactly as MAC'd, the previous MAC and the MAC: the shape of an export line
(audit/export.py), so a receiver can dedupe on `id` and check the links. Personal columns (username, IP, user
agent) are not sent: the chain covers them through `subject_mac`, and a GDPR erasure could not reach a SIEM's copy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FORMAT = "atrium-audit-siem"
# RFC 5424 structured data needs an SD-ID with an enterprise number: 32473 is the one RFC 5612 reserves for
# documentation and examples (Atrium has none of its own).
SD_ID = "atrium@32473"
BOM = b"\xef\xbb\xbf"
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class WireEntry:
    chain: str
    key_id: str
    seq: int
    mac: str
    prev_mac: str
    timestamp: datetime
    event_type: str
    status: str
    chained: dict[str, Any]
    extra: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.chain}/{self.seq}/{self.mac}"

    def document(self) -> dict[str, Any]:
        return {"id": self.id, "chain": self.chain, "key_id": self.key_id, "seq": self.seq, "prev_mac": self.prev_mac,
                "mac": self.mac, "chained": self.chained, **self.extra}


def entry_json(entry: WireEntry) -> bytes:
    return json.dumps(entry.document(), sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str).encode()


def _header_field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII, at most `limit` characters, `-` when empty."""
    cleaned = _NOT_PRINTABLE.sub("_", value)[:limit]
    return cleaned or "-"


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(entry: WireEntry, *, hostname: str, facility: int) -> bytes:
    """One RFC 5424 message: severity informational, or warning for an entry whose status is not success."""
    severity = 6 if entry.status in ("success", "ok", "") else 4
    stamp = entry.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    structured = (f'[{SD_ID} id="{_sd_value(entry.id)}" chain="{_sd_value(entry.chain)}" seq="{entry.seq}" '
                  f'mac="{_sd_value(entry.mac)}"]')
    header = (f"<{facility * 8 + severity}>1 {stamp} {_header_field(hostname, 255)} atrium - "
              f"{_header_field(entry.event_type, 32)} {structured} ")
    return header.encode() + BOM + entry_json(entry)


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 section 3.4.1 framing: `MSG-LEN SP SYSLOG-MSG`."""
    return str(len(message)).encode() + b" " + message


def webhook_body(chain: str, entries: list[WireEntry]) -> bytes:
    document = {"format": FORMAT, "version": 1, "chain": chain, "first_seq": entries[0].seq,
                "last_seq": entries[-1].seq, "entries": [entry.document() for entry in entries]}
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=` + HMAC-SHA-256(secret, "<timestamp>." + body): the receiver checks it and the timestamp's age."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"

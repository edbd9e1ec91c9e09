"""Walking a hash chain (a tenant's or the platform's) and saying exactly what is wrong with it.

The walk checks, entry by entry in sequence order: the sequence has no gap, each entry links to the MAC of the one
before it, and each entry's MAC matches its content. Then the head is compared with the newest signed checkpoint
taken outside the chain's table (audit.checkpoints): a chain that ends before the checkpoint lost its tail (or was
truncated), and a chain whose entry at the checkpoint's sequence has another MAC was rewritten.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

GENESIS = "0" * 64  # the previous MAC of entry #1
MAX_FINDINGS = 50  # enough to see the pattern; a verification of a wrecked chain stays readable


# json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str) without building its
# encoder for every call (the encoder keeps no state between calls: safe to share across threads).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_text(value: Any) -> str:
    """canonical(value) before its UTF-8 encoding."""
    return _CANONICAL.encode(value)


def canonical_text_plain(value: Any) -> str:
    """canonical_text(value), written by orjson (a tenth of json's time), for a value audit.chain.canonical_fast
    has checked: dicts with str keys, lists, str, int, bool, None and floats that repr writes without an exponent,
    exact types. orjson writes those byte for byte as json does (sorted keys, no spaces, the same escapes, the same
    shortest float digits: tests/audit/test_canonical_orjson.py); what it refuses (an integer beyond 64 bits, a
    lone surrogate) is json's text."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return _CANONICAL.encode(value)


def canonical_bytes_plain(value: Any) -> bytes:
    """canonical_text_plain(value).encode(): orjson's UTF-8 as it is."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _CANONICAL.encode(value).encode()


def canonical(value: Any) -> bytes:
    """The bytes a MAC or signature covers: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(value).encode()


def entry_mac_of(key: bytes, prev_mac: str, body: dict[str, Any]) -> str:
    """mac(n) = HMAC-SHA-256(key, prev_mac || canonical(chained fields of n)); body as audit.chain.chained_body."""
    return hmac.digest(key, prev_mac.encode() + canonical(body), "sha256").hex()


def key_fingerprint(chain_key: bytes) -> str:
    """Which chain a checkpoint or export belongs to, without revealing the chain's key."""
    return hmac.new(chain_key, b"atrium-audit-checkpoint-chain-id", hashlib.sha256).hexdigest()[:16]


def checkpoint_signed_body(checkpoint: dict[str, Any]) -> bytes:
    """What a checkpoint's signature covers (audit.platform.checkpoints)."""
    fields = ("chain", "key_id", "seq", "head_mac", "created_at")
    return canonical({"v": 1, **{name: checkpoint[name] for name in fields}})


def request_id_problem(request_id: str | None, metadata: Any) -> str | None:
    """The request id column (the idempotency key) is chained through the entry's metadata: a column that differs
    from its chained value was edited. (A NULL column is not checked: entries written before the column existed
    carry the id in their metadata only.)"""
    if request_id is None:
        return None
    chained = metadata.get("request_id") if isinstance(metadata, dict) else None
    if chained != request_id:
        return f"request id {request_id!r} does not match its chained value {chained!r} (edited)"
    return None


@dataclass(frozen=True)
class Finding:
    seq: int | None
    kind: str  # gap, link, mac, personal, tail, truncated, rewritten, checkpoint
    message: str


@dataclass(frozen=True)
class CheckpointRef:
    """The checkpoint a verification compared against (already signature-checked)."""

    chain: str
    seq: int
    head_mac: str
    created_at: str
    source: str  # "table" or "file"


@dataclass
class VerifyResult:
    entries: int
    ok: bool
    broken_seq: int | None = None
    reason: str = ""
    findings: list[Finding] = field(default_factory=list)
    head_seq: int = 0
    head_mac: str = GENESIS
    checkpoint: CheckpointRef | None = None

    def __str__(self) -> str:
        if self.ok:
            against = (f"; matches the signed checkpoint #{self.checkpoint.seq} of {self.checkpoint.created_at}"
                       if self.checkpoint else "")
            return f"ok: {self.entries} entries, chain intact{against}"
        shown = "; ".join(f.message for f in self.findings[:5])
        more = f" (and {len(self.findings) - 5} more)" if len(self.findings) > 5 else ""
        return f"BROKEN: {shown}{more} ({self.entries} entries read)"

    def as_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "ok": self.ok, "broken_seq": self.broken_seq, "head_seq": self.head_seq,
                "findings": [f.message for f in self.findings[:MAX_FINDINGS]],
                "checkpoint_seq": self.checkpoint.seq if self.checkpoint else None}


class ChainWalk:
    """Feed entries in sequence order; `finish()` returns the verdict."""

    def __init__(self, checkpoint: CheckpointRef | None = None, problems: list[Finding] | None = None) -> None:
        self.checkpoint = checkpoint
        self.findings: list[Finding] = list(problems or [])  # found in the checkpoints themselves
        self.prev = GENESIS
        self.expected_seq = 1
        self.count = 0
        self.mac_at_checkpoint: str | None = None

    def _find(self, seq: int | None, kind: str, message: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(seq, kind, message))

    def feed(self, *, seq: int, prev_mac: str, mac: str, content_ok: bool, extra: str | None = None) -> None:
        gap = seq != self.expected_seq
        if gap:
            missing = (f"entry #{self.expected_seq} is missing" if seq == self.expected_seq + 1
                       else f"entries #{self.expected_seq} to #{seq - 1} are missing")
            self._find(self.expected_seq, "gap", f"gap in sequence numbers: {missing} (deleted), next is #{seq}")
        elif prev_mac != self.prev:
            self._find(seq, "link", f"entry #{seq} does not link to entry #{seq - 1} (reordered, inserted or "
                                    f"replaced entries)")
        if not content_ok:
            self._find(seq, "mac", f"entry #{seq}: MAC does not match its content (edited, or forged without the "
                                   f"key)")
        if extra:
            self._find(seq, "personal", f"entry #{seq}: {extra}")
        if self.checkpoint is not None and seq == self.checkpoint.seq:
            self.mac_at_checkpoint = mac
        self.prev, self.expected_seq, self.count = mac, seq + 1, self.count + 1

    def finish(self) -> VerifyResult:
        head_seq = self.expected_seq - 1
        cp = self.checkpoint
        if cp is not None and cp.seq > 0:
            when = f"the signed checkpoint of {cp.created_at} ({cp.source})"
            if self.count == 0:
                self._find(1, "truncated", f"truncated: the chain is empty but {when} recorded {cp.seq} entries "
                                           f"(head #{cp.seq})")
            elif head_seq < cp.seq:
                missing = f"entry #{cp.seq} is" if head_seq + 1 == cp.seq else f"entries #{head_seq + 1} to " \
                                                                                 f"#{cp.seq} are"
                self._find(head_seq + 1, "tail", f"tail deleted: the chain ends at entry #{head_seq} but {when} "
                                                 f"recorded head #{cp.seq}: {missing} missing")
            elif self.mac_at_checkpoint != cp.head_mac:
                self._find(cp.seq, "rewritten", f"entry #{cp.seq} does not match {when}: the chain was rewritten "
                                                f"up to that entry")
        first = self.findings[0] if self.findings else None
        return VerifyResult(entries=self.count, ok=first is None, broken_seq=first.seq if first else None,
                            reason=first.message if first else "", findings=list(self.findings),
                            head_seq=head_seq, head_mac=self.prev, checkpoint=cp)

"""Signed checkpoints of each audit chain's head, kept outside the chain's own table.

A checkpoint says "chain C had its head at entry #seq with MAC m, at time t", signed with HMAC-SHA-256 under
ATRIUM_AUDIT_CHECKPOINT_KEY (separate from every chain key, never stored in the database). Each is written twice:
a row in the public schema (audit_platform_chaincheckpoint, append-only) and, once that row has committed, a JSON
line appended to ATRIUM_AUDIT_CHECKPOINT_DIR/<chain>.jsonl (fsynced). Verification compares the chain with the
newest valid checkpoint of either source: an entry deleted at the tail, a truncation, or a chain rewritten with the
chain key all show, even if the checkpoint rows were deleted too (the file remembers).

`key_id` (a fingerprint of the chain's key) tells which chain a checkpoint belongs to: a tenant re-created under
the same schema name gets a new key, so the old tenant's checkpoints are not compared with the new chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from audit import queries
from audit.platform.models import ChainCheckpoint
from audit.verify import GENESIS, CheckpointRef, Finding, checkpoint_signed_body, key_fingerprint

logger = logging.getLogger(__name__)
PLATFORM = "public"  # the platform chain's name: the public schema, which no tenant can be called


def checkpoint_key() -> bytes:
    key = str(getattr(settings, "ATRIUM_AUDIT_CHECKPOINT_KEY", "") or "")
    if not key:
        raise ImproperlyConfigured("ATRIUM_AUDIT_CHECKPOINT_KEY is not set; audit checkpoints need it")
    return key.encode()


def chain_key_id(chain_key: bytes) -> str:
    return key_fingerprint(chain_key)


@dataclass(frozen=True)
class SignedCheckpoint:
    chain: str
    key_id: str
    seq: int
    head_mac: str
    created_at: str
    reason: str
    signature: str = ""

    def signed_body(self) -> bytes:
        return checkpoint_signed_body(asdict(self))  # `reason` is informative only: not signed

    def sign(self, key: bytes) -> SignedCheckpoint:
        signature = hmac.new(key, self.signed_body(), hashlib.sha256).hexdigest()
        return SignedCheckpoint(**{**asdict(self), "signature": signature})

    def valid(self, key: bytes) -> bool:
        expected = hmac.new(key, self.signed_body(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)

    def ref(self, source: str) -> CheckpointRef:
        return CheckpointRef(chain=self.chain, seq=self.seq, head_mac=self.head_mac, created_at=self.created_at,
                             source=source)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignedCheckpoint:
        return cls(chain=str(data["chain"]), key_id=str(data["key_id"]), seq=int(data["seq"]),
                   head_mac=str(data["head_mac"]), created_at=str(data["created_at"]),
                   reason=str(data.get("reason", "")), signature=str(data["signature"]))


def _row_checkpoint(row: ChainCheckpoint) -> SignedCheckpoint:
    return SignedCheckpoint(chain=row.chain, key_id=row.key_id, seq=row.seq, head_mac=row.head_mac,
                            created_at=row.created_at, reason=row.reason, signature=row.signature)


def checkpoint_file(chain: str) -> Path:
    return Path(settings.ATRIUM_AUDIT_CHECKPOINT_DIR) / f"{chain}.jsonl"


def _file_append(checkpoint: SignedCheckpoint) -> None:
    """Append one line and fsync it. O_APPEND: concurrent writers never interleave within a line."""
    path = checkpoint_file(checkpoint.chain)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(asdict(checkpoint), sort_keys=True) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        # The row in the database stands; the file is the second copy. Loud, not fatal.
        logger.error("audit_checkpoint_file_failed chain=%s seq=%s path=%s error=%s", checkpoint.chain,
                     checkpoint.seq, path, exc)


def _file_checkpoints(chain: str, key_id: str) -> tuple[list[tuple[int, SignedCheckpoint]], list[Finding]]:
    """(line number, checkpoint) of this chain from its file, and what is wrong with the file's lines."""
    path = checkpoint_file(chain)
    found: list[tuple[int, SignedCheckpoint]] = []
    findings: list[Finding] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return found, findings
    lines = data.split(b"\n")
    complete = lines[:-1]  # the last piece has no newline: empty, or a write cut short by a crash (ignored)
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            checkpoint = SignedCheckpoint.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            findings.append(Finding(None, "checkpoint", f"checkpoint file {path} line {number} is unreadable "
                                                        f"(edited)"))
            continue
        if checkpoint.key_id == key_id and checkpoint.chain == chain:
            found.append((number, checkpoint))
    return found, findings


def checkpoint_latest(chain: str, chain_key: bytes) -> tuple[CheckpointRef | None, list[Finding]]:
    """The newest (highest sequence) validly signed checkpoint of `chain` from the table and the file, and what is
    wrong with the checkpoints themselves (forged or edited ones, rows deleted from the table)."""
    key, key_id = checkpoint_key(), chain_key_id(chain_key)
    findings: list[Finding] = []
    table_best: SignedCheckpoint | None = None
    for row in ChainCheckpoint.objects.filter(chain=chain, key_id=key_id).order_by("-seq", "-id").iterator():
        checkpoint = _row_checkpoint(row)
        if checkpoint.valid(key):
            table_best = checkpoint
            break
        findings.append(Finding(row.seq, "checkpoint", f"checkpoint row {row.pk} (head #{row.seq}) has an invalid "
                                                       f"signature (forged or edited)"))
    file_best: SignedCheckpoint | None = None
    lines, file_findings = _file_checkpoints(chain, key_id)
    findings += file_findings
    for number, checkpoint in lines:
        if not checkpoint.valid(key):
            findings.append(Finding(checkpoint.seq, "checkpoint", f"checkpoint file line {number} (head "
                                                                  f"#{checkpoint.seq}) has an invalid signature "
                                                                  f"(forged or edited)"))
        elif file_best is None or checkpoint.seq > file_best.seq:
            file_best = checkpoint
    if file_best is not None and (table_best is None or file_best.seq > table_best.seq):
        # Rows commit before their line is written: a file ahead of the table means rows were removed.
        findings.append(Finding(file_best.seq, "checkpoint",
                                f"the checkpoint of head #{file_best.seq} ({file_best.created_at}) is in the "
                                f"checkpoint file but not in the database (checkpoint rows deleted)"))
        return file_best.ref("file"), findings
    return (table_best.ref("table") if table_best else None), findings


def _head(chain: str) -> tuple[int, str]:
    # A tenant's chain is in its own schema (on the search path); the platform's in the public schema.
    source = queries.platform_table() if chain == PLATFORM else queries.tenant_table()
    return queries.chain_head(source) or (0, GENESIS)


def checkpoint_take(*, chain: str, chain_key: bytes, reason: str,
                    head: tuple[int, str] | None = None) -> SignedCheckpoint | None:
    """Sign and store a checkpoint of `chain`'s head (read now, or `head` as a verification just walked it).

    A tenant's chain is read in the current schema: call it in that tenant's context. Nothing is written when the
    head has not moved since the newest checkpoint (that one still vouches for it), nor when the head is behind it
    or differs from it: signing a shortened or rewritten chain would bless the tampering, so that is logged as an
    error and left for `verify_audit` to report.
    """
    key, key_id = checkpoint_key(), chain_key_id(chain_key)
    with transaction.atomic():
        queries.advisory_xact_lock(f"atrium.audit.checkpoint.{chain}")  # one checkpoint writer per chain at a time
        seq, mac = head if head is not None else _head(chain)
        last = ChainCheckpoint.objects.filter(chain=chain, key_id=key_id).order_by("-seq", "-id").first()
        if last is not None:
            if last.seq == seq and last.head_mac == mac:
                return None
            if last.seq > seq or (last.seq == seq and last.head_mac != mac):
                if head is None:  # a verification that walked an older head is not news; the live head is
                    logger.error("audit_chain_behind_checkpoint chain=%s head=%s checkpoint=%s: not checkpointed; "
                                 "run manage.py verify_audit", chain, seq, last.seq)
                return None
        checkpoint = SignedCheckpoint(chain=chain, key_id=key_id, seq=seq, head_mac=mac, reason=reason,
                                      created_at=timezone.now().isoformat(timespec="microseconds")).sign(key)
        ChainCheckpoint.objects.create(**asdict(checkpoint))
        transaction.on_commit(lambda: _file_append(checkpoint))
    return checkpoint


def checkpoint_all(reason: str = "scheduled") -> int:
    """Checkpoint the platform chain and every tenant's (the beat task, from the public schema)."""
    from django_tenants.utils import tenant_context

    from audit.chain import tenant_key
    from audit.platform.chain import platform_key
    from tenants.models import Tenant

    taken = int(checkpoint_take(chain=PLATFORM, chain_key=platform_key(), reason=reason) is not None)
    for tenant in Tenant.objects.exclude(schema_name=PLATFORM).order_by("schema_name"):
        with tenant_context(tenant):
            taken += int(checkpoint_take(chain=tenant.schema_name, chain_key=tenant_key(), reason=reason)
                         is not None)
    connection.set_schema_to_public()  # type: ignore[attr-defined]
    return taken

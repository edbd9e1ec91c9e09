"""The platform's own audit trail (public schema), chained exactly like a tenant's (audit.chain)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models


class AppendOnlyQuerySet(models.QuerySet[Any]):
    def update(self, **kwargs: Any) -> int:
        raise PermissionError("platform audit entries are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("platform audit entries are append-only")


class PlatformAuditEntry(models.Model):
    """One change to a platform object, by a named actor, hash-chained to the entry before it.

    mac = HMAC-SHA-256(platform audit key, prev_mac || canonical JSON of the chained fields); see
    audit.platform.chain. Database triggers refuse UPDATE, DELETE and TRUNCATE.
    """

    seq = models.BigIntegerField(unique=True, editable=False)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    timestamp = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=200, db_index=True,
                             help_text="Who made the change: the platform user's username, or a named process.")
    action = models.CharField(max_length=60, db_index=True)
    target = models.CharField(max_length=300, blank=True, default="")
    tenant_schema = models.CharField(max_length=63, blank=True, default="", db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    prev_mac = models.CharField(max_length=64, editable=False)
    mac = models.CharField(max_length=64, editable=False)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        verbose_name = "platform audit entry"
        verbose_name_plural = "platform audit entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise PermissionError("platform audit entries are written by platform_audit_record only")

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("platform audit entries are append-only")


class ChainCheckpoint(models.Model):
    """A signed statement "chain X had N entries ending in MAC M at time T", kept outside the chain's own table.

    Signed with ATRIUM_AUDIT_CHECKPOINT_KEY (a key separate from every chain key, never in the database) and also
    appended to a file (ATRIUM_AUDIT_CHECKPOINT_DIR), so deleting a chain's newest entries, truncating it or
    rewriting it shows against the newest checkpoint (audit.platform.checkpoints). Append-only (triggers).
    """

    chain = models.CharField(max_length=63, help_text="The tenant's schema, or 'public' for the platform chain.")
    key_id = models.CharField(max_length=16, help_text="Fingerprint of the chain's key: which chain this is.")
    seq = models.BigIntegerField()
    head_mac = models.CharField(max_length=64)
    created_at = models.CharField(max_length=40, help_text="ISO 8601, UTC, as signed.")
    reason = models.CharField(max_length=20)
    signature = models.CharField(max_length=64)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["chain", "key_id", "-seq"], name="checkpoint_chain_seq")]

    def __str__(self) -> str:
        return f"{self.chain} #{self.seq} at {self.created_at}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise PermissionError("checkpoints are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("checkpoints are append-only")

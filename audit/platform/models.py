"""The platform's own audit trail (public schema), chained exactly like a tenant's (audit.chain)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models

from tenants.fields import EncryptedTextField


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


class SiemDestination(models.Model):
    """A SIEM that receives one audit trail as it is written (audit.siem): a tenant's, or the platform's.

    `url` says the transport: `https://…` (JSON batches, HMAC-signed with `secret`), `syslog+tls://host:port`
    (RFC 5424 over TLS, octet-counted) or `syslog://host:port` (the same over plain TCP). Configured in the platform
    admin, or by a tenant's administrators for their own trail (audit.TenantSiemDestination); the address passes
    config.outbound's rules (public addresses unless allow-listed) when saved and again at every connection (pinned
    to the address checked).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                               help_text="Whose trail is sent. Empty: the platform's own audit trail.")
    url = models.CharField(max_length=500, help_text="https://siem.example/ingest, syslog+tls://siem.example:6514 "
                                                     "or syslog://siem.internal:514 (allow-listed hosts only).")
    secret = EncryptedTextField(blank=True, default="",
                                help_text="Webhooks: the HMAC key of the X-Atrium-Signature header. Stored encrypted; "
                                          "leave blank to keep.")
    ca_bundle = models.TextField(blank=True, default="",
                                 help_text="PEM certificates to trust instead of the system's (a private CA).")
    verify_tls = models.BooleanField(default=True, help_text="Verify the receiver's certificate and name.")
    backfill = models.BooleanField(default=True, help_text="Send the whole trail from its first entry; otherwise "
                                                           "only entries written after the destination was added.")
    enabled = models.BooleanField(default=True)
    owner = models.CharField(max_length=10, choices=[("platform", "platform"), ("tenant", "tenant")],
                             default="platform", editable=False,
                             help_text="Who manages it: a tenant's administrators edit only their own.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "SIEM destination"

    def __str__(self) -> str:
        return self.name

    @property
    def chain(self) -> str:
        return self.tenant.schema_name if self.tenant is not None else "public"


class SiemCursor(models.Model):
    """How far one destination has acknowledged one chain: the last sequence number the receiver took.

    Locked with SELECT … FOR UPDATE SKIP LOCKED while a batch is sent, so one streamer works on a destination and
    chain at a time; advanced only after the receiver acknowledged. `destination` is empty for the operator's
    destination from the settings (ATRIUM_SIEM_URL), which has one cursor per chain. `key_id` is the chain key's
    fingerprint: a tenant re-created under the same name starts from its first entry again.
    """

    destination = models.ForeignKey(SiemDestination, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="cursors")
    chain = models.CharField(max_length=63)
    key_id = models.CharField(max_length=16, blank=True, default="")
    last_seq = models.BigIntegerField(default=0)
    head_seq = models.BigIntegerField(default=0, help_text="The chain's head when last looked at (lag = head - last).")
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed deliveries.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="Last acknowledged batch.")
    caught_up_at = models.DateTimeField(null=True, blank=True, help_text="Last time nothing was left to send.")

    class Meta:
        ordering = ["chain"]
        verbose_name = "SIEM cursor"
        constraints = [models.UniqueConstraint(fields=["destination", "chain"], nulls_distinct=False,
                                               name="siem_cursor_destination_chain")]

    def __str__(self) -> str:
        return f"{self.chain} at #{self.last_seq}"

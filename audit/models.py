"""Audit and compliance data in each tenant's schema: the audit chain, consent, GDPR jobs and receipts."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from audit.platform.models import SiemDestination


class ComplianceRights(models.Model):
    """Holder of the compliance permissions; no table."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("export_data", "Request and download any user's GDPR export"),
            ("delete_data", "Request a user's GDPR deletion"),
            ("view_audit", "Read the audit trail and run verification"),
        ]

    def __str__(self) -> str:
        return "compliance rights"


class AppendOnlyQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: Any) -> int:
        raise PermissionError("audit entries are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit entries are append-only")


class AuditEntry(models.Model):
    """One audited event, hash-chained to the one before it (see audit.chain).

    `mac` covers every column except the personal ones (`user_id`, `personal`), which are covered through
    `subject_mac` instead: a GDPR deletion can blank them (setting `redacted_at`) and the chain still verifies.
    A database trigger refuses any other UPDATE and every DELETE.
    """

    seq = models.BigIntegerField(unique=True, editable=False)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    timestamp = models.DateTimeField(db_index=True)
    event_type = models.CharField(max_length=60, db_index=True)
    actor = models.CharField(max_length=32, blank=True, default="", db_index=True,
                             help_text="Pseudonym of the user (keyed by the tenant's audit key); survives deletion.")
    model = models.CharField(max_length=120, blank=True, default="")
    input_hash = models.CharField(max_length=64, blank=True, default="")
    output_hash = models.CharField(max_length=64, blank=True, default="")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, default="success", db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    # Personal columns: blanked by a GDPR deletion.
    user_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    personal = models.JSONField(default=dict, blank=True, help_text="username, session id, IP, user agent")
    redacted_at = models.DateTimeField(null=True, blank=True)
    subject_mac = models.CharField(max_length=64, editable=False)
    # The model call's request id (idempotency key): a retried or replayed record is never written twice. Also in
    # the chained metadata; this column carries the unique constraint.
    request_id = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    prev_mac = models.CharField(max_length=64, editable=False)
    mac = models.CharField(max_length=64, editable=False)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["event_type", "-timestamp"], name="audit_type_time")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event_type}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise PermissionError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit entries are append-only")

    @property
    def session_id(self) -> str:
        return str(self.personal.get("session_id", ""))

    @property
    def ip(self) -> str:
        return str(self.personal.get("ip", ""))

    @property
    def user_agent(self) -> str:
        return str(self.personal.get("user_agent", ""))


class ProcessingNotice(models.Model):
    """A version of the tenant's processing notice. Users accept the newest one before their first model call."""

    version = models.PositiveIntegerField(unique=True)
    text = models.TextField()
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"notice v{self.version}"


class Consent(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="consents")
    notice = models.ForeignKey(ProcessingNotice, on_delete=models.PROTECT, related_name="consents")
    accepted_at = models.DateTimeField(auto_now_add=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-accepted_at"]
        indexes = [models.Index(fields=["user", "notice"], name="consent_user_notice")]

    def __str__(self) -> str:
        return f"consent to v{self.notice.version}"


class GdprJob(models.Model):
    class Kind(models.TextChoices):
        EXPORT = "export"
        DELETION = "deletion"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # The subject. Blanked (pseudonym kept) when a deletion of this subject completes.
    subject_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    subject_label = models.CharField(max_length=254, blank=True, default="")
    subject_ref = models.CharField(max_length=32, blank=True, default="", help_text="Pseudonym of the subject.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=40, blank=True, default="")
    counts = models.JSONField(default=dict, blank=True)
    file = models.CharField(max_length=300, blank=True, default="")
    size = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "GDPR job"

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"


class Erasure(models.Model):
    """A subject whose deletion has started: their calls still in flight (or replayed from a journal later) are
    recorded redacted, and nothing new is linked to them (audit_append_once reads this table inside the record's
    write transaction). Kept after the deletion, as the subject's pseudonym only (not the user id)."""

    subject_ref = models.CharField(max_length=32, unique=True)
    started_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"erasure of {self.subject_ref}"


class DeletionReceipt(models.Model):
    """Proof for compliance that a deletion ran: who asked, when it finished, what it removed. No personal data."""

    job = models.OneToOneField(GdprJob, on_delete=models.PROTECT, related_name="receipt")
    subject_ref = models.CharField(max_length=32)
    requested_by_ref = models.CharField(max_length=32, blank=True, default="")
    requested_at = models.DateTimeField()
    completed_at = models.DateTimeField()
    counts = models.JSONField(default=dict)
    account_action = models.CharField(max_length=20)

    class Meta:
        ordering = ["-completed_at"]

    def __str__(self) -> str:
        return f"deletion receipt {self.job_id}"


class TenantSiemDestination(SiemDestination):
    """The SIEM destinations of the current tenant's own trail, as its administrators see them in the tenant admin
    (audit/siem/tenant_admin.py): the rows live in the public schema (audit_platform), where the streamer finds
    every destination in one query."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "SIEM destination"

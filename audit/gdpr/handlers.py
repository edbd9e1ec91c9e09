"""The audit app's own personal data for GDPR export and erasure (config/personal_data.py): consents, the
subject's other GDPR jobs and export files, and the personal columns of their audit entries."""

from __future__ import annotations

from typing import IO

from django.core.files.storage import default_storage

from audit.gdpr.lease import JobRefused
from audit.models import AuditEntry, Consent, GdprJob
from audit.services import audit_redact_batch
from config.personal_data import (
    ErasureStep,
    ExportPart,
    Progress,
    json_array,
    register_erasure,
    register_export,
)


def _audit_summary_write(subject_id: int, stream: IO[bytes], _progress: Progress) -> int:
    rows = AuditEntry.objects.filter(user_id=subject_id).order_by("seq").values(
        "seq", "event_id", "timestamp", "event_type", "model", "input_tokens", "output_tokens", "latency_ms",
        "status", "personal")
    return json_array(stream, ({**r, "event_id": str(r["event_id"])} for r in rows.iterator()))


def _consents_erase(subject_id: int, limit: int) -> dict[str, int]:
    ids = list(Consent.objects.filter(user_id=subject_id).values_list("pk", flat=True)[:limit])
    Consent.objects.filter(pk__in=ids).delete()
    return {"consents": len(ids)}


def _exports_erase(subject_id: int, _limit: int) -> dict[str, int]:
    """The subject's other jobs: export files deleted, personal fields blanked (pseudonym kept)."""
    running = GdprJob.objects.filter(kind=GdprJob.Kind.DELETION, subject_id=subject_id,
                                     status=GdprJob.Status.RUNNING).values_list("pk", flat=True).first()
    if running is None:
        raise JobRefused("no running deletion of this subject")
    count = 0
    for other in GdprJob.objects.select_for_update().filter(subject_id=subject_id).exclude(pk=running):
        if other.file and default_storage.exists(other.file):
            default_storage.delete(other.file)  # idempotent: a rerun finds nothing to delete
        status = GdprJob.Status.EXPIRED if other.kind == GdprJob.Kind.EXPORT else other.status
        GdprJob.objects.filter(pk=other.pk).update(subject_id=None, subject_label="", file="", status=status)
        count += 1
    # Jobs the subject asked for (their own exports, or others' as compliance staff) lose the link to them.
    GdprJob.objects.filter(requested_by_id=subject_id).exclude(pk=running).update(requested_by=None)
    return {"exports": count}


def register() -> None:
    register_export(ExportPart("consents.json", "Processing notices you accepted or withdrew, with their text and "
                                                "times.", 40, lambda subject, stream, _p: json_array(
        stream, Consent.objects.filter(user_id=subject).values("notice__version", "notice__text", "accepted_at",
                                                               "withdrawn_at"))))
    register_export(ExportPart("audit_summary.json", "Audit entries about you: event, time, model, tokens, status, "
                                                     "IP and user agent.", 80, _audit_summary_write))
    register_erasure(ErasureStep("consents", 50, _consents_erase))
    register_erasure(ErasureStep("exports", 60, _exports_erase))
    register_erasure(ErasureStep("audit", 100, lambda subject, limit: {"audit": audit_redact_batch(subject, limit)}))

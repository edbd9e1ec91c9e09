"""GDPR export: every app's export parts (config/personal_data.py) zipped into one file, downloaded by the subject or
compliance staff over their signed-in session (no secret in the URL), and expiry."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from audit.gdpr.lease import JobRefused, batch_pause, job_renew, job_subject
from audit.models import GdprJob
from audit.services import audit_record
from config.http import HttpError
from config.personal_data import export_parts

EXPORT_FORMAT_VERSION = 1


def readme() -> dict[str, Any]:
    return {"format": "atrium-gdpr-export", "version": EXPORT_FORMAT_VERSION,
            "files": {part.filename: part.description for part in export_parts()},
            "encoding": "UTF-8 JSON; times are ISO 8601 in UTC."}


def export_run(job: GdprJob) -> None:
    subject = job_subject(job)
    if not get_user_model().objects.filter(pk=subject).exists():
        raise JobRefused("the user no longer exists")
    job_renew(job, progress=1, step="collecting")
    tmp_dir = os.path.join(settings.MEDIA_ROOT, "tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    counts: dict[str, int] = {}
    parts = export_parts()
    with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".zip", delete=True) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            info = {**readme(), "subject": job.subject_ref, "job": str(job.id), "created_at": timezone.now()}
            archive.writestr("README.json", json.dumps(info, default=str, indent=1))
            for index, part in enumerate(parts):
                name = part.filename.removesuffix(".json")

                def progress(fraction: float, index: int = index, name: str = name) -> None:
                    share = 90 / max(len(parts), 1)
                    job_renew(job, progress=min(90, 5 + int(share * (index + min(1.0, fraction)))), step=name)
                    batch_pause()

                with archive.open(part.filename, "w", force_zip64=True) as stream:
                    counts[name] = int(part.write(subject, stream, progress) or 0)
        tmp.flush()
        size = tmp.tell()
        tmp.seek(0)
        schema = connection.schema_name  # type: ignore[attr-defined]
        stored_name = f"exports/{schema}/{job.id}.zip"
        if default_storage.exists(stored_name):
            default_storage.delete(stored_name)
        stored = default_storage.save(stored_name, File(tmp))
    with transaction.atomic():
        expires_at = timezone.now() + timedelta(days=settings.ATRIUM_EXPORT_TTL_DAYS)
        job_renew(job, status=GdprJob.Status.DONE, progress=100, step="done", file=stored, size=size, counts=counts,
                  finished_at=timezone.now(), expires_at=expires_at, lease_until=None, error="")
        audit_record(event_type="export_completed", metadata={"job": str(job.id), "subject": job.subject_ref,
                                                              "size": size, "counts": counts})


class DownloadRefused(HttpError):
    """Why a signed-in user may not download an export: 403, or 410 once it has expired."""

    status = 403


def may_download(job: GdprJob, viewer: Any) -> bool:
    """Only the person exported and compliance staff with the export permission."""
    return bool(viewer.pk == job.subject_id or viewer.has_perm("audit.export_data"))


def download_check(job: GdprJob, viewer: Any) -> None:
    """Checked at every download, for the signed-in `viewer`: raises DownloadRefused unless they may have it now."""
    if not may_download(job, viewer):
        raise DownloadRefused("Only the person exported and compliance staff may download it.")
    if job.kind != GdprJob.Kind.EXPORT or job.status != GdprJob.Status.DONE or not job.file:
        raise DownloadRefused("This export is not available.")
    if job.expires_at is None or job.expires_at <= timezone.now():
        raise DownloadRefused("This export has expired and was deleted.", status=410)


def export_expire() -> int:
    """Delete export files past their expiry (beat task)."""
    count = 0
    for job in GdprJob.objects.filter(kind=GdprJob.Kind.EXPORT, status=GdprJob.Status.DONE,
                                      expires_at__lte=timezone.now()):
        if job.file and default_storage.exists(job.file):
            default_storage.delete(job.file)
        with transaction.atomic():
            GdprJob.objects.filter(pk=job.pk).update(status=GdprJob.Status.EXPIRED, file="")
            audit_record(event_type="export_expired", metadata={"job": str(job.id)})
        count += 1
    return count

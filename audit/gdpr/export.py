"""GDPR export: every app's export parts (config/personal_data.py) zipped into one file, downloaded by the subject or
compliance staff over their signed-in session (no secret in the URL), and expiry."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
from datetime import UTC, datetime, timedelta
from typing import IO, Any

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
from config.personal_data import export_file_parts, export_parts

EXPORT_FORMAT_VERSION = 1


def readme() -> dict[str, Any]:
    return {"format": "atrium-gdpr-export", "version": EXPORT_FORMAT_VERSION,
            "files": {part.filename: part.description for part in export_parts()},
            "folders": {f"{part.folder}/": part.description for part in export_file_parts()},
            "encoding": "UTF-8 JSON; times are ISO 8601 in UTC. Each file in the archive is dated when its content "
                        "was last changed (the export's time for the JSON files)."}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def zip_entry(name: str, modified: datetime) -> zipfile.ZipInfo:
    """An archive entry dated `modified`: the DOS date (UTC; zip has no zone) and the extended timestamp field
    (0x5455, seconds since the epoch), so unzip tools show the true time. Without a date, zipfile writes
    1980-01-01."""
    when = modified.astimezone(UTC)
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.extra = struct.pack("<HHBl", 0x5455, 5, 1, int(when.timestamp()))
    return info


class ArchiveFolder:
    """One folder of the export archive (config.personal_data.ExportFolder): safe, unique names, dated entries."""

    def __init__(self, archive: zipfile.ZipFile, folder: str) -> None:
        self.archive, self.folder = archive, folder.strip("/")
        self.taken: set[str] = set()

    def _path(self, name: str) -> str:
        parts = [p for p in (_UNSAFE.sub("-", piece).strip("-.") for piece in name.split("/")) if p]
        stem = "/".join(parts) or "file"
        base, dot, extension = stem.rpartition(".") if "." in stem.rsplit("/", 1)[-1] else (stem, "", "")
        candidate, n = stem, 1
        while candidate.lower() in self.taken:
            n += 1
            candidate = f"{base}-{n}{dot}{extension}"
        self.taken.add(candidate.lower())
        return f"{self.folder}/{candidate}"

    def add(self, name: str, data: bytes | IO[bytes], *, modified: datetime) -> str:
        path = self._path(name)
        with self.archive.open(zip_entry(path, modified), "w", force_zip64=True) as stream:
            if isinstance(data, bytes):
                stream.write(data)
            else:
                shutil.copyfileobj(data, stream, 1024 * 1024)
        return path


def export_run(job: GdprJob) -> None:
    subject = job_subject(job)
    if not get_user_model().objects.filter(pk=subject).exists():
        raise JobRefused("the user no longer exists")
    job_renew(job, progress=1, step="collecting")
    tmp_dir = os.path.join(settings.MEDIA_ROOT, "tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    counts: dict[str, int] = {}
    parts = export_parts()
    folders = export_file_parts()
    total = len(parts) + len(folders)
    started = timezone.now()

    def progress_of(index: int, name: str) -> Any:
        def progress(fraction: float) -> None:
            share = 90 / max(total, 1)
            job_renew(job, progress=min(90, 5 + int(share * (index + min(1.0, fraction)))), step=name)
            batch_pause()
        return progress

    with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".zip", delete=True) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            info = {**readme(), "subject": job.subject_ref, "job": str(job.id), "created_at": started}
            with archive.open(zip_entry("README.json", started), "w") as stream:
                stream.write(json.dumps(info, default=str, indent=1).encode())
            for index, part in enumerate(parts):
                name = part.filename.removesuffix(".json")
                with archive.open(zip_entry(part.filename, started), "w", force_zip64=True) as stream:
                    counts[name] = int(part.write(subject, stream, progress_of(index, name)) or 0)
            for index, files in enumerate(folders, start=len(parts)):
                folder = ArchiveFolder(archive, files.folder)
                counts[files.folder] = int(files.write(subject, folder, progress_of(index, files.folder)) or 0)
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


def export_filename(job: GdprJob) -> str:
    """The download's name: the subject's pseudonym and the export's time and id, so two exports never share one."""
    created = job.created_at.astimezone(UTC)
    return f"atrium-export-{job.subject_ref[:8]}-{created:%Y%m%d-%H%M%S}-{str(job.id)[:8]}.zip"


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

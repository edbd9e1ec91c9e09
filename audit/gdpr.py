"""GDPR export and deletion jobs, retention and export expiry.

Jobs are rows (audit.GdprJob) driven by Celery tasks (audit.tasks). Each run first takes a lease on its row, so
two workers never run one job at once; a job whose worker died (lease expired) is resumed by `gdpr_recover`.

Deletion is a fixed list of steps; each works in batches, and each batch commits together with its counts and,
for the last batch, the step's completion. A run killed at any point resumes at the first unfinished step and
ends in the same state, with the same counts, as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from audit import chain
from audit.models import AuditEntry, Consent, DeletionReceipt, GdprJob
from audit.services import audit_record, audit_redact_batch

logger = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1
SIGNING_SALT = "atrium.export-download"
DELETION_STEPS = ("conversations", "preferences", "api_keys", "identities", "consents", "exports", "sessions",
                  "admin_log", "usage", "audit", "account")


class JobRefused(Exception):
    """The request cannot be accepted (unknown user, not allowed); `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _subject(job: GdprJob) -> int:
    if job.subject_id is None:
        raise JobRefused("the job has no subject (already deleted?)")
    return int(job.subject_id)


def _pause() -> None:
    pause = settings.ATRIUM_GDPR_BATCH_PAUSE_MS
    if pause:
        time.sleep(pause / 1000)


def _queue() -> str:
    return str(settings.ATRIUM_GDPR_QUEUE)


# --- requests ----------------------------------------------------------------------------------------

def gdpr_request(*, kind: str, subject: Any, requested_by: Any, request: Any = None) -> GdprJob:
    """Create (or return the already active) job and queue it after commit. Permission checks are the caller's."""
    if kind not in GdprJob.Kind.values:
        raise JobRefused(f"unknown job kind {kind!r}")
    if kind == GdprJob.Kind.DELETION and subject.pk == getattr(requested_by, "pk", None):
        raise JobRefused("Compliance staff cannot delete their own account; ask a colleague.")
    key = chain.tenant_key()
    with transaction.atomic():
        active = GdprJob.objects.select_for_update().filter(
            kind=kind, subject_id=subject.pk, status__in=[GdprJob.Status.QUEUED, GdprJob.Status.RUNNING]).first()
        if active is not None:
            return active
        job = GdprJob.objects.create(kind=kind, subject_id=subject.pk, subject_label=subject.email or subject.username,
                                     subject_ref=chain.pseudonym(key, subject.pk), requested_by=requested_by)
        audit_record(event_type=f"{kind}_requested", user=requested_by, request=request,
                     metadata={"job": str(job.id), "subject": job.subject_ref})
        transaction.on_commit(lambda: gdpr_enqueue(job))
    return job


def gdpr_enqueue(job: GdprJob) -> None:
    from audit.tasks import gdpr_run

    gdpr_run.apply_async(args=[str(job.id)], queue=_queue())


def gdpr_retry(job: GdprJob, *, by: Any, request: Any = None) -> GdprJob:
    """Queue a failed job again; it resumes where it stopped."""
    with transaction.atomic():
        updated = GdprJob.objects.filter(pk=job.pk, status=GdprJob.Status.FAILED).update(
            status=GdprJob.Status.QUEUED, error="", lease_until=None)
        if updated:
            audit_record(event_type=f"{job.kind}_retried", user=by, request=request, metadata={"job": str(job.id)})
            transaction.on_commit(lambda: gdpr_enqueue(job))
    job.refresh_from_db()
    return job


# --- running -----------------------------------------------------------------------------------------

def job_claim(job_id: str) -> GdprJob | None:
    """Take the job's lease. None when it is finished or another worker holds a live lease."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_gdprjob SET lease_until = now() + make_interval(secs => %s), attempts = attempts + 1, "
            "status = 'running', updated_at = now() WHERE id = %s AND status IN ('queued', 'running') "
            "AND (lease_until IS NULL OR lease_until < now()) RETURNING id",
            [settings.ATRIUM_GDPR_LEASE_S, job_id],
        )
        claimed = cursor.fetchone()
    return GdprJob.objects.get(pk=job_id) if claimed else None


def _renew(job: GdprJob, **fields: Any) -> None:
    """Extend the lease and save progress fields, in the caller's transaction."""
    fields["lease_until"] = timezone.now() + timedelta(seconds=settings.ATRIUM_GDPR_LEASE_S)
    fields["updated_at"] = timezone.now()
    GdprJob.objects.filter(pk=job.pk).update(**fields)
    for name, value in fields.items():
        setattr(job, name, value)


def gdpr_run(job_id: str) -> str:
    job = job_claim(job_id)
    if job is None:
        return "skipped"
    try:
        if job.kind == GdprJob.Kind.EXPORT:
            export_run(job)
        else:
            deletion_run(job)
    except Exception as exc:
        logger.exception("GDPR %s job %s failed", job.kind, job.id)
        with transaction.atomic():
            GdprJob.objects.filter(pk=job.pk).update(status=GdprJob.Status.FAILED, lease_until=None,
                                                     error=f"{type(exc).__name__}: {exc}"[:2000])
            audit_record(event_type=f"{job.kind}_failed", status="error", metadata={"job": str(job.id)},
                         error=type(exc).__name__)
        return "failed"
    return "done"


def gdpr_recover() -> int:
    """Queue again every job whose worker went away (lease expired) or whose message was lost."""
    stale = timezone.now()
    jobs = GdprJob.objects.filter(status__in=[GdprJob.Status.QUEUED, GdprJob.Status.RUNNING]).exclude(
        lease_until__gte=stale)
    queued_lost = timezone.now() - timedelta(seconds=settings.ATRIUM_GDPR_LEASE_S)
    count = 0
    for job in jobs:
        if job.status == GdprJob.Status.QUEUED and job.created_at > queued_lost and job.lease_until is None:
            continue  # freshly queued: its message is probably on the way
        gdpr_enqueue(job)
        count += 1
    return count


# --- export --------------------------------------------------------------------------------------------

def _json_array(stream: IO[bytes], items: Iterator[Any]) -> int:
    stream.write(b"[\n")
    count = 0
    for item in items:
        if count:
            stream.write(b",\n")
        stream.write(json.dumps(item, ensure_ascii=False, default=str).encode())
        count += 1
    stream.write(b"\n]\n")
    return count


def _export_conversations(job: GdprJob, total: int) -> Iterator[dict[str, Any]]:
    from inference.models import Conversation, Message

    last_progress = time.monotonic()
    conversations = Conversation.objects.filter(user_id=_subject(job)).order_by("created_at", "id")
    for done, conversation in enumerate(conversations.iterator(chunk_size=200), start=1):
        messages = Message.objects.filter(conversation_id=conversation.id).order_by("created_at").values(
            "id", "role", "content", "model", "provider", "region", "input_tokens", "output_tokens", "stop_reason",
            "incomplete", "created_at")
        yield {"id": str(conversation.id), "title": conversation.title, "model": conversation.model,
               "system": conversation.system, "created_at": conversation.created_at,
               "updated_at": conversation.updated_at,
               "messages": [{**m, "id": str(m["id"])} for m in messages.iterator(chunk_size=2000)]}
        if time.monotonic() - last_progress > 0.5 or done == total:
            _renew(job, progress=min(90, 5 + int(85 * done / max(total, 1))), step="conversations")
            last_progress = time.monotonic()
            _pause()


def _export_files(job: GdprJob, user: Any) -> list[tuple[str, Callable[[IO[bytes]], int]]]:
    from access.models import ApiKey, UserIdentity
    from inference.models import ChatPreference, Conversation, UsageDaily

    total = Conversation.objects.filter(user_id=_subject(job)).count()

    def write_list(rows: Any) -> Callable[[IO[bytes]], int]:
        return lambda stream: _json_array(stream, iter(rows))

    profile = {"id": user.pk, "username": user.username, "email": user.email, "first_name": user.first_name,
               "last_name": user.last_name, "date_joined": user.date_joined, "last_login": user.last_login,
               "is_active": user.is_active, "roles": list(user.groups.values_list("name", flat=True))}
    audit_rows = AuditEntry.objects.filter(user_id=_subject(job)).order_by("seq").values(
        "seq", "event_id", "timestamp", "event_type", "model", "input_tokens", "output_tokens", "latency_ms",
        "status", "personal")
    return [
        ("profile.json", lambda s: s.write(json.dumps(profile, default=str, indent=1).encode()) and 1),
        ("conversations.json", lambda s: _json_array(s, _export_conversations(job, total))),
        ("preferences.json", write_list(ChatPreference.objects.filter(user_id=_subject(job)).values(
            "default_model", "settings", "updated_at"))),
        ("consents.json", write_list(Consent.objects.filter(user_id=_subject(job)).values(
            "notice__version", "notice__text", "accepted_at", "withdrawn_at"))),
        ("usage.json", write_list(UsageDaily.objects.filter(user_id=_subject(job)).order_by("day").values(
            "day", "model", "provider", "requests", "errors", "input_tokens", "output_tokens"))),
        ("api_keys.json", write_list(ApiKey.objects.filter(user_id=_subject(job)).values(
            "name", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"))),
        ("identities.json", write_list(UserIdentity.objects.filter(user_id=_subject(job)).values(
            "issuer", "subject"))),
        ("audit_summary.json", write_list({**r, "event_id": str(r["event_id"])} for r in audit_rows.iterator())),
    ]


README = {
    "format": "atrium-gdpr-export", "version": EXPORT_FORMAT_VERSION,
    "files": {
        "profile.json": "Your account: username, email, names, roles, dates.",
        "conversations.json": "Every conversation with its messages (Anthropic content blocks), oldest first.",
        "preferences.json": "Your chat preferences.",
        "consents.json": "Processing notices you accepted or withdrew, with their text and times.",
        "usage.json": "Requests and tokens per day, model and provider.",
        "api_keys.json": "Your API keys (name and visible prefix only; secrets are never stored).",
        "identities.json": "Single sign-on identities (issuer and subject) linked to your account.",
        "audit_summary.json": "Audit entries about you: event, time, model, tokens, status, IP and user agent.",
    },
    "encoding": "UTF-8 JSON; times are ISO 8601 in UTC.",
}


def export_run(job: GdprJob) -> None:
    user = get_user_model().objects.filter(pk=_subject(job)).first()
    if user is None:
        raise JobRefused("the user no longer exists")
    _renew(job, progress=1, step="collecting")
    tmp_dir = os.path.join(settings.MEDIA_ROOT, "tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    counts: dict[str, int] = {}
    with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".zip", delete=True) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            readme = {**README, "subject": job.subject_ref, "job": str(job.id), "created_at": timezone.now()}
            archive.writestr("README.json", json.dumps(readme, default=str, indent=1))
            for name, write in _export_files(job, user):
                with archive.open(name, "w", force_zip64=True) as stream:
                    counts[name.removesuffix(".json")] = int(write(stream) or 0)
        tmp.flush()
        size = tmp.tell()
        tmp.seek(0)
        schema = connection.schema_name  # type: ignore[attr-defined]
        name = f"exports/{schema}/{job.id}.zip"
        if default_storage.exists(name):
            default_storage.delete(name)
        stored = default_storage.save(name, File(tmp))
    with transaction.atomic():
        _renew(job, status=GdprJob.Status.DONE, progress=100, step="done", file=stored, size=size, counts=counts,
               finished_at=timezone.now(), expires_at=timezone.now() + timedelta(days=settings.ATRIUM_EXPORT_TTL_DAYS),
               lease_until=None, error="")
        audit_record(event_type="export_completed", metadata={"job": str(job.id), "subject": job.subject_ref,
                                                              "size": size, "counts": counts})


def download_token(job: GdprJob, viewer: Any) -> str:
    return signing.dumps({"job": str(job.id), "user": viewer.pk}, salt=SIGNING_SALT)


def may_download(job: GdprJob, viewer: Any) -> bool:
    """Only the person exported and compliance staff with the export permission."""
    return bool(viewer.pk == job.subject_id or viewer.has_perm("audit.export_data"))


def download_check(job: GdprJob, viewer: Any, token: str) -> str | None:
    """None when `viewer` may download `job` with `token`; else the reason it may not."""
    max_age = timedelta(days=settings.ATRIUM_EXPORT_TTL_DAYS)
    try:
        data = signing.loads(token, salt=SIGNING_SALT, max_age=max_age)
    except signing.SignatureExpired:
        return "This download link has expired."
    except signing.BadSignature:
        return "This download link is not valid."
    if data.get("job") != str(job.id) or data.get("user") != viewer.pk:
        return "This download link was issued to someone else."
    if job.kind != GdprJob.Kind.EXPORT or job.status != GdprJob.Status.DONE or not job.file:
        return "This export is not available."
    if job.expires_at is None or job.expires_at <= timezone.now():
        return "This export has expired and was deleted."
    if not may_download(job, viewer):
        return "Only the person exported and compliance staff may download it."
    return None


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


# --- deletion ------------------------------------------------------------------------------------------

def messages_delete(conversation_ids: list[Any]) -> int:
    """Delete the messages of these conversations in one statement.

    The ORM cascade cannot do this in SQL alone here (django-tenants listens to post_delete for every model, so
    Django loads each message to send the signal): 100,000 messages would cost hundreds of MB in the worker.
    """
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM inference_message WHERE conversation_id = ANY(%s)", [list(conversation_ids)])
        return int(cursor.rowcount)


def _batched_delete(job: GdprJob, step: str, queryset_for: Callable[[], Any],
                    extra_counts: Callable[[list[Any]], dict[str, int]] | None = None) -> None:
    """Delete in batches; each batch commits with its counts. The step is marked done with the last batch."""
    batch = settings.ATRIUM_GDPR_BATCH
    while True:
        with transaction.atomic():
            ids = list(queryset_for().values_list("pk", flat=True)[:batch])
            counts = dict(job.counts)
            if ids:
                for name, value in (extra_counts(ids) if extra_counts else {}).items():
                    counts[name] = int(counts.get(name, 0)) + value
                queryset_for().filter(pk__in=ids).delete()
            counts[step] = int(counts.get(step, 0)) + len(ids)
            done = len(ids) < batch
            _renew(job, counts=counts, step=step if not done else f"{step}:done")
        if done:
            return
        _pause()


def _batched_update(job: GdprJob, step: str, one_batch: Callable[[int], int]) -> None:
    """Like _batched_delete for work that is not a queryset delete (audit redaction)."""
    batch = settings.ATRIUM_GDPR_BATCH
    while True:
        with transaction.atomic():
            changed = one_batch(batch)
            counts = dict(job.counts)
            counts[step] = int(counts.get(step, 0)) + changed
            done = changed < batch
            _renew(job, counts=counts, step=step if not done else f"{step}:done")
        if done:
            return
        _pause()


def _step_done(job: GdprJob, step: str) -> bool:
    order = list(DELETION_STEPS)
    current = job.step.split(":")[0] if job.step else ""
    if current not in order:
        return False
    position = order.index(current)
    return order.index(step) < position or (order.index(step) == position and job.step.endswith(":done"))


def _atomic_step(job: GdprJob, step: str, work: Callable[[], int]) -> None:
    """A step small enough for one transaction: its effect, its count and its completion commit together."""
    with transaction.atomic():
        count = work()
        counts = dict(job.counts)
        counts[step] = int(counts.get(step, 0)) + count
        _renew(job, counts=counts, step=f"{step}:done")


def deletion_run(job: GdprJob) -> None:
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType
    from django.contrib.sessions.models import Session

    from access.models import ApiKey, UserIdentity
    from inference.models import ChatPreference, Conversation
    from inference.services import usage_anonymise

    subject_id = job.subject_id
    if subject_id is None:
        raise JobRefused("the job has no subject")
    user_model = get_user_model()
    total_steps = len(DELETION_STEPS)

    def progress(step: str) -> None:
        _renew(job, progress=int(100 * DELETION_STEPS.index(step) / (total_steps + 1)))

    steps: dict[str, Callable[[], None]] = {
        "conversations": lambda: _batched_delete(
            job, "conversations", lambda: Conversation.objects.filter(user_id=subject_id).order_by("pk"),
            lambda ids: {"messages": messages_delete(ids)}),
        "preferences": lambda: _batched_delete(job, "preferences",
                                               lambda: ChatPreference.objects.filter(user_id=subject_id)),
        "api_keys": lambda: _batched_delete(job, "api_keys", lambda: ApiKey.objects.filter(user_id=subject_id)),
        "identities": lambda: _batched_delete(job, "identities",
                                              lambda: UserIdentity.objects.filter(user_id=subject_id)),
        "consents": lambda: _batched_delete(job, "consents", lambda: Consent.objects.filter(user_id=subject_id)),
        "exports": lambda: _deletion_exports(job, subject_id),
        "sessions": lambda: _atomic_step(job, "sessions", lambda: _sessions_delete(Session, subject_id)),
        "admin_log": lambda: _atomic_step(job, "admin_log",
                                          lambda: _admin_log_scrub(LogEntry, ContentType, user_model, subject_id)),
        "usage": lambda: _atomic_step(job, "usage", lambda: usage_anonymise(subject_id)),
        "audit": lambda: _batched_update(job, "audit", lambda batch: audit_redact_batch(subject_id, batch)),
        "account": lambda: _atomic_step(job, "account", lambda: _account_close(user_model, subject_id, job)),
    }
    for step in DELETION_STEPS:
        if _step_done(job, step):
            continue
        progress(step)
        steps[step]()
    _deletion_finish(job)


def _deletion_exports(job: GdprJob, subject_id: int) -> None:
    """The subject's other jobs: export files deleted, personal fields blanked (pseudonym kept)."""
    def work() -> int:
        count = 0
        for other in GdprJob.objects.select_for_update().filter(subject_id=subject_id).exclude(pk=job.pk):
            if other.file and default_storage.exists(other.file):
                default_storage.delete(other.file)  # idempotent: a rerun finds nothing to delete
            status = GdprJob.Status.EXPIRED if other.kind == GdprJob.Kind.EXPORT else other.status
            GdprJob.objects.filter(pk=other.pk).update(subject_id=None, subject_label="", file="", status=status)
            count += 1
        # Jobs the subject asked for (their own exports, or others' as compliance staff) lose the link to them.
        GdprJob.objects.filter(requested_by_id=subject_id).exclude(pk=job.pk).update(requested_by=None)
        return count

    _atomic_step(job, "exports", work)


def _sessions_delete(session_model: Any, subject_id: int) -> int:
    removed = 0
    for session in session_model.objects.filter(expire_date__gt=timezone.now() - timedelta(days=1)).iterator():
        data = session.get_decoded()  # {} for a corrupt session
        if str(data.get("_auth_user_id")) == str(subject_id):
            session.delete()
            removed += 1
    return removed


def _admin_log_scrub(log_model: Any, content_type_model: Any, user_model: Any, subject_id: int) -> int:
    user_type = content_type_model.objects.get_for_model(user_model)
    about = log_model.objects.filter(content_type=user_type, object_id=str(subject_id))
    changed = about.update(object_repr="(deleted user)", change_message="[]")
    removed, _ = log_model.objects.filter(user_id=subject_id).delete()
    return changed + removed


def _account_close(user_model: Any, subject_id: int, job: GdprJob) -> int:
    from tenants.models import Tenant

    user = user_model.objects.filter(pk=subject_id).first()
    if user is None:
        return 0
    tenant = Tenant.objects.get(schema_name=connection.schema_name)  # type: ignore[attr-defined]
    if tenant.gdpr_account_action == Tenant.AccountAction.REMOVE:
        user.delete()
        return 1
    user.username = f"deleted-{job.subject_ref}"
    user.email = ""
    user.first_name = ""
    user.last_name = ""
    user.is_active = False
    user.is_staff = False
    user.is_superuser = False
    user.set_unusable_password()
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
    return 1


def _deletion_finish(job: GdprJob) -> None:
    if job.notified_at is None and "@" in job.subject_label:
        send_mail(
            subject="Your personal data has been deleted",
            message=("Your data in this organisation's Atrium (conversations, preferences, API keys, consents) has "
                     f"been deleted, and your account closed. Reference: {job.id}."),
            from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=[job.subject_label], fail_silently=False)
        _renew(job, notified_at=timezone.now())
    requester_ref = ""
    if job.requested_by_id is not None:
        requester_ref = chain.pseudonym(chain.tenant_key(), job.requested_by_id)
    from tenants.models import Tenant

    action = Tenant.objects.get(schema_name=connection.schema_name).gdpr_account_action  # type: ignore[attr-defined]
    with transaction.atomic():
        _receipt, created = DeletionReceipt.objects.get_or_create(job=job, defaults={
            "subject_ref": job.subject_ref, "requested_by_ref": requester_ref, "requested_at": job.created_at,
            "completed_at": timezone.now(), "counts": job.counts, "account_action": action})
        _renew(job, status=GdprJob.Status.DONE, progress=100, step="done", subject_id=None, subject_label="",
               finished_at=timezone.now(), lease_until=None, error="")
        if created:
            audit_record(event_type="deletion_completed", metadata={"job": str(job.id), "subject": job.subject_ref,
                                                                    "counts": job.counts, "account": action})


# --- retention -----------------------------------------------------------------------------------------

def retention_run(tenant: Any) -> int:
    """Delete conversations idle longer than the tenant's retention period, in batches; audit the count."""
    from inference.models import Conversation

    cutoff = timezone.now() - timedelta(days=tenant.retention_days)
    batch = settings.ATRIUM_RETENTION_BATCH
    conversations = messages = 0
    while True:
        with transaction.atomic():
            ids = list(Conversation.objects.filter(updated_at__lt=cutoff).order_by("pk")
                       .values_list("pk", flat=True)[:batch])
            if ids:
                messages += messages_delete(ids)
                Conversation.objects.filter(pk__in=ids).delete()
                conversations += len(ids)
        if len(ids) < batch:
            break
    with transaction.atomic():
        audit_record(event_type="retention_run", metadata={"retention_days": tenant.retention_days,
                                                           "cutoff": cutoff.isoformat(),
                                                           "conversations": conversations, "messages": messages})
    return conversations

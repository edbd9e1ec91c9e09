"""Inference's personal data for GDPR export, erasure and retention (config/personal_data.py): conversations with
their messages, chat preferences, usage."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.personal_data import (
    ErasureStep,
    ExportFiles,
    ExportFolder,
    ExportPart,
    Progress,
    RetentionStep,
    json_array,
    register_erasure,
    register_export,
    register_export_files,
    register_retention,
)
from inference.models import Attachment, ChatPreference, Conversation, Message, UsageDaily, UsageRecord
from inference.services import usage_anonymise
from inference.transcripts import attachment_archive_name, transcript_html, transcript_name


def messages_delete(conversation_ids: list[Any]) -> int:
    """Delete the messages of these conversations in one statement.

    The ORM cascade cannot do this in SQL alone here (django-tenants listens to post_delete for every model, so
    Django loads each message to send the signal): 100,000 messages would cost hundreds of MB in the worker.
    """
    # Attachments first, through the ORM: they reference messages, and their files go once this commits
    # (inference.attachments.attachment_file_delete_on_commit). There are few of them, unlike messages.
    Attachment.objects.filter(conversation_id__in=list(conversation_ids)).delete()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM inference_message WHERE conversation_id = ANY(%s)", [list(conversation_ids)])
        return int(cursor.rowcount)


def _conversations_write(subject_id: int, stream: IO[bytes], progress: Progress) -> int:
    conversations = Conversation.objects.filter(user_id=subject_id).order_by("created_at", "id")
    total = conversations.count()
    last_progress = time.monotonic()

    def items() -> Any:
        nonlocal last_progress
        for done, conversation in enumerate(conversations.iterator(chunk_size=200), start=1):
            messages = Message.objects.filter(conversation_id=conversation.id).order_by("created_at").values(
                "id", "role", "content", "model", "provider", "region", "input_tokens", "output_tokens",
                "stop_reason", "incomplete", "created_at")
            yield {"id": str(conversation.id), "title": conversation.title, "model": conversation.model,
                   "system": conversation.system, "created_at": conversation.created_at,
                   "updated_at": conversation.updated_at,
                   "messages": [{**m, "id": str(m["id"])} for m in messages.iterator(chunk_size=2000)],
                   "attachments": [{"id": str(a.id), "message_id": str(a.message_id) if a.message_id else None,
                                    "name": a.name, "content_type": a.content_type, "size": a.size,
                                    "created_at": a.created_at}
                                   for a in Attachment.objects.filter(conversation_id=conversation.id)]}
            if time.monotonic() - last_progress > 0.5 or done == total:
                progress(done / max(total, 1))
                last_progress = time.monotonic()

    return json_array(stream, items())


def _attachments_write(subject_id: int, folder: ExportFolder, progress: Progress) -> int:
    """The bytes of every file the subject attached, dated when uploaded (conversations.json lists them)."""
    attachments = Attachment.objects.filter(conversation__user_id=subject_id).order_by("created_at", "id")
    total = attachments.count()
    for done, attachment in enumerate(attachments.iterator(chunk_size=200), start=1):
        try:
            with attachment.file.open("rb") as stream:
                folder.add(attachment_archive_name(attachment), stream, modified=attachment.created_at)
        except FileNotFoundError:  # the row outlived its file (storage restored from an older backup): say so
            folder.add(attachment_archive_name(attachment) + ".missing.txt",
                       b"This attachment's file was not found in storage.", modified=attachment.created_at)
        progress(done / max(total, 1))
    return total


def _transcripts_write(subject_id: int, folder: ExportFolder, progress: Progress) -> int:
    """One readable HTML transcript per conversation, dated when the conversation last changed, linking its files
    in ../attachments/."""
    conversations = Conversation.objects.filter(user_id=subject_id).order_by("created_at", "id")
    total = conversations.count()
    last_progress = time.monotonic()
    for done, conversation in enumerate(conversations.iterator(chunk_size=100), start=1):
        files = {str(a.id): f"../attachments/{attachment_archive_name(a)}"
                 for a in Attachment.objects.filter(conversation_id=conversation.id)}
        folder.add(transcript_name(conversation), transcript_html(conversation, files).encode(),
                   modified=conversation.updated_at)
        if time.monotonic() - last_progress > 0.5 or done == total:
            progress(done / max(total, 1))
            last_progress = time.monotonic()
    return total


def _conversations_erase(subject_id: int, limit: int) -> dict[str, int]:
    ids = list(Conversation.objects.filter(user_id=subject_id).order_by("pk").values_list("pk", flat=True)[:limit])
    if not ids:
        return {"conversations": 0}
    messages = messages_delete(ids)
    Conversation.objects.filter(pk__in=ids).delete()
    return {"conversations": len(ids), "messages": messages}


def _preferences_erase(subject_id: int, limit: int) -> dict[str, int]:
    ids = list(ChatPreference.objects.filter(user_id=subject_id).values_list("pk", flat=True)[:limit])
    ChatPreference.objects.filter(pk__in=ids).delete()
    return {"preferences": len(ids)}


def _conversations_expire(tenant: Any) -> dict[str, int]:
    """Conversations idle longer than the tenant's retention period, in batches."""
    cutoff = timezone.now() - timedelta(days=tenant.retention_days)
    batch = settings.ATRIUM_RETENTION_BATCH
    conversations = messages = 0
    while True:
        from django.db import transaction

        with transaction.atomic():
            ids = list(Conversation.objects.filter(updated_at__lt=cutoff).order_by("pk")
                       .values_list("pk", flat=True)[:batch])
            if ids:
                messages += messages_delete(ids)
                Conversation.objects.filter(pk__in=ids).delete()
                conversations += len(ids)
        if len(ids) < batch:
            return {"conversations": conversations, "messages": messages}


def _usage_ledger_prune(tenant: Any) -> dict[str, int]:
    """Per-call usage rows are the idempotency keys of recent records and rebuild today's quota counters; after
    ATRIUM_USAGE_LEDGER_DAYS the daily rows carry the same counts."""
    cutoff = timezone.now().date() - timedelta(days=settings.ATRIUM_USAGE_LEDGER_DAYS)
    removed, _ = UsageRecord.objects.filter(day__lt=cutoff).delete()
    return {"usage_ledger": removed}


def register() -> None:
    register_export(ExportPart("conversations.json", "Every conversation with its messages (Anthropic content "
                                                     "blocks), oldest first.", 20, _conversations_write))
    register_export_files(ExportFiles("attachments", "The images and PDFs you attached, as uploaded "
                                                     "(attachments/<conversation>/<file>).", 21, _attachments_write))
    register_export_files(ExportFiles("transcripts", "Each conversation as a readable HTML page (open it in a "
                                                     "browser), named by its start date and title.", 22,
                                      _transcripts_write))
    register_export(ExportPart("preferences.json", "Your chat preferences.", 30, lambda subject, stream, _p: json_array(
        stream, ChatPreference.objects.filter(user_id=subject).values("default_model", "settings", "updated_at"))))
    register_export(ExportPart("usage.json", "Requests, tokens and cost (micro-USD) per day, model and provider.", 50,
                               lambda subject, stream, _p: json_array(stream, UsageDaily.objects.filter(
                                   user_id=subject).order_by("day").values(
                                   "day", "model", "provider", "api_key", "requests", "errors", "input_tokens",
                                   "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_micros"))))
    register_erasure(ErasureStep("conversations", 10, _conversations_erase))
    register_erasure(ErasureStep("preferences", 20, _preferences_erase))
    register_erasure(ErasureStep("usage", 90, lambda subject, _limit: {"usage": usage_anonymise(subject)}))
    register_retention(RetentionStep("conversations", 10, _conversations_expire))
    register_retention(RetentionStep("usage_ledger", 20, _usage_ledger_prune))

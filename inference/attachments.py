"""Images and PDFs attached to chat messages: checked on upload, stored per tenant, deleted with their conversation.

Only users with `access.use_vision` may upload (checked here) or send them (the gateway's policy checks the image
and document blocks again). The type is decided from the file's first bytes, never from the name or the browser's
content type; the size is capped by ATRIUM_CHAT_ATTACHMENT_MAX_BYTES. Files live under
MEDIA_ROOT/<tenant schema>/attachments/<conversation id>/ and are removed after the transaction that deletes their
row commits, whichever way the row goes (a user's delete, retention, GDPR erasure: all cascade from Conversation).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from config.http import HttpError
from inference.gateway import InvalidRequest
from inference.models import Attachment, Conversation, Message

# First bytes -> (media type, Anthropic block type).
SIGNATURES: list[tuple[bytes, int, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "image"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "image"),
    (b"GIF87a", 0, "image/gif", "image"),
    (b"GIF89a", 0, "image/gif", "image"),
    (b"WEBP", 8, "image/webp", "image"),
    (b"%PDF-", 0, "application/pdf", "document"),
]
ALLOWED = "PNG, JPEG, GIF or WebP images and PDF documents"
MAX_PER_MESSAGE = 5


class AttachmentRefused(HttpError):
    """An upload the user may not make (permission) or that is not acceptable (type, size)."""

    status = 400


def sniff(head: bytes) -> tuple[str, str] | None:
    for magic, offset, media_type, block in SIGNATURES:
        if head[offset:offset + len(magic)] == magic and (magic != b"WEBP" or head[:4] == b"RIFF"):
            return media_type, block
    return None


def attachment_create(*, conversation: Conversation, user: Any, upload: UploadedFile[bytes]) -> Attachment:
    if not user.has_perm("access.use_vision"):
        raise AttachmentRefused("Your role may not attach images or PDFs (missing permission access.use_vision).",
                                status=403)
    limit = int(settings.ATRIUM_CHAT_ATTACHMENT_MAX_BYTES)
    if upload.size is None or upload.size > limit:
        raise AttachmentRefused(f"The file is larger than {limit // (1024 * 1024)} MB.", status=413)
    if upload.size == 0:
        raise AttachmentRefused("The file is empty.")
    upload.seek(0)
    kind = sniff(upload.read(16))
    upload.seek(0)
    if kind is None:
        raise AttachmentRefused(f"Only {ALLOWED} can be attached.", status=415)
    name = (upload.name or "file").replace("/", "_").replace("\\", "_")[:200]
    attachment = Attachment(conversation=conversation, name=name, content_type=kind[0], size=upload.size)
    attachment.file.save(str(attachment.id), upload, save=False)
    attachment.save()
    return attachment


def attachments_claim(*, conversation: Conversation, ids: Sequence[str]) -> list[Attachment]:
    """The conversation's not-yet-sent attachments with these ids, in the order given."""
    if not ids:
        return []
    if len(ids) > MAX_PER_MESSAGE:
        raise InvalidRequest(f"attachments: at most {MAX_PER_MESSAGE} files per message.")
    try:
        found = {str(a.id): a for a in Attachment.objects.filter(conversation=conversation, message__isnull=True,
                                                                   id__in=list(ids))}
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("attachments: unknown attachment id.") from exc
    missing = [i for i in ids if str(i) not in found]
    if missing:
        raise InvalidRequest("attachments: unknown attachment id.")
    return [found[str(i)] for i in ids]


def attachment_blocks_for_send(attachments: list[Attachment]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for attachment in attachments:
        with attachment.file.open("rb") as handle:
            data = base64.b64encode(handle.read()).decode()
        blocks.append({"type": attachment.block_type,
                       "source": {"type": "base64", "media_type": attachment.content_type, "data": data}})
    return blocks


def attachment_source(message: Message, attachment_id: str) -> dict[str, Any] | None:
    attachment = Attachment.objects.filter(conversation_id=message.conversation_id, id=attachment_id).first()
    if attachment is None:
        return None
    source: dict[str, Any] = attachment_blocks_for_send([attachment])[0]["source"]
    return source


def attachment_files_delete(names: list[str]) -> None:
    storage = Attachment._meta.get_field("file").storage
    for name in names:
        if name and storage.exists(name):
            storage.delete(name)


def attachment_file_delete_on_commit(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    """post_delete receiver: the file goes once the row's deletion commits (a rollback keeps both)."""
    name = instance.file.name or ""
    transaction.on_commit(lambda: attachment_files_delete([name]))

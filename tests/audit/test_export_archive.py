"""The GDPR export archive as people open it: a readable transcript per conversation beside the JSON, the bytes of
every attachment, true dates on every entry (never zip's 1980-01-01) and names that never collide."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audit import gdpr
from audit.gdpr.export import export_filename
from audit.models import GdprJob

pytestmark = pytest.mark.django_db

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc00000030101009a2b6d4f0000000049454e44ae426082")
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def _conversation(user: Any, title: str, *, days_ago: int, answer: str, attach: bytes | None = None) -> Any:
    from inference.models import Attachment, Conversation, Message

    conversation = Conversation.objects.create(user=user, model="claude-sonnet-5-5", title=title,
                                               system="Answer briefly.")
    blocks: list[dict[str, Any]] = []
    if attach is not None:
        attachment = Attachment(conversation=conversation, name="../scan <1>.png", content_type="image/png",
                                size=len(attach))
        attachment.file.save(str(attachment.id), SimpleUploadedFile("x.png", attach), save=False)
        attachment.save()
        blocks.append({"type": "image", "title": attachment.name,
                       "source": {"type": "attachment", "id": str(attachment.id), "media_type": "image/png"}})
    question = Message.objects.create(conversation=conversation, role="user",
                                      content=[*blocks, {"type": "text", "text": f"Question {title}\n    indented"}])
    Message.objects.create(conversation=conversation, role="assistant", model="claude-sonnet-5-5",
                           content=[{"type": "text", "text": answer}])
    when = timezone.now() - timedelta(days=days_ago)
    Conversation.objects.filter(pk=conversation.pk).update(created_at=when, updated_at=when)
    Message.objects.filter(pk=question.pk).update(created_at=when)
    conversation.refresh_from_db()
    return conversation


def _archive(job: GdprJob) -> zipfile.ZipFile:
    with default_storage.open(job.file, "rb") as fh:
        return zipfile.ZipFile(io.BytesIO(fh.read()))


def test_export_has_transcripts_attachment_bytes_true_dates_and_unique_names(tenant_a: Any, make_user: Any,
                                                                              in_tenant: Any) -> None:
    subject = make_user(tenant_a, "power_user", username="archive-subject")
    officer = make_user(tenant_a, "compliance_officer", username="archive-officer")
    with in_tenant(tenant_a):
        first = _conversation(subject, "Pears", days_ago=3, attach=PNG,
                              answer="## Pears\n\n| Kind | Taste |\n|---|---|\n| Conference | sweet |\n\n"
                                     "```python\nprint('pear')\n```\n\n" + HOSTILE + " [x](javascript:alert(3))")
        second = _conversation(subject, "Pears", days_ago=0, answer="Same title, other conversation.")
        job = gdpr.gdpr_request(kind="export", subject=subject, requested_by=officer)
        assert gdpr.gdpr_run(str(job.id)) == "done"
        job.refresh_from_db()
        archive = _archive(job)

    names = archive.namelist()
    assert len(names) == len(set(names))
    transcripts = sorted(n for n in names if n.startswith("transcripts/"))
    assert len(transcripts) == 2, "one transcript per conversation, even with the same title"
    older = next(n for n in transcripts if str(first.id)[:8] in n)
    assert older == f"transcripts/{first.created_at.astimezone(UTC):%Y-%m-%d}-Pears-{str(first.id)[:8]}.html"
    assert str(second.id)[:8] in next(n for n in transcripts if n != older)

    html = archive.read(older).decode()
    assert "<h2>Pears</h2>" in html and "<th>Kind</th>" in html
    assert '<code class="language-python">print(' in html
    body = html.split("</style>", 1)[1]
    assert "<script" not in body and "<img" not in body and "javascript:" not in body
    assert "&lt;img src=x onerror=" in body, "the model's raw HTML is shown as text"
    assert "Question Pears\n    indented" in html, "questions keep their text and indentation"
    assert "Answer briefly." in html

    # The attachment's bytes, linked from the transcript, under a safe unique name.
    stored = [n for n in names if n.startswith("attachments/")]
    assert len(stored) == 1 and stored[0].startswith(f"attachments/{first.id}/") and stored[0].endswith(".png")
    assert ".." not in stored[0] and "<" not in stored[0]
    assert archive.read(stored[0]) == PNG
    assert f'href="../{stored[0]}"' in html

    # Every entry carries a real date: the conversation's last change, the upload, or the export's time.
    for info in archive.infolist():
        assert info.date_time[0] >= 2026, f"{info.filename} dated {info.date_time}"
    day = archive.getinfo(older).date_time[:3]
    assert day == first.updated_at.astimezone(UTC).timetuple()[:3]
    readme = archive.getinfo("README.json").date_time
    assert datetime(*readme, tzinfo=UTC) > timezone.now() - timedelta(minutes=10)


def test_two_exports_of_one_day_have_different_file_names(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    subject = make_user(tenant_a, "basic_user", username="twice-subject")
    with in_tenant(tenant_a):
        one = GdprJob.objects.create(kind="export", subject_id=subject.pk, subject_ref="a" * 32)
        two = GdprJob.objects.create(kind="export", subject_id=subject.pk, subject_ref="a" * 32)
        GdprJob.objects.filter(pk=two.pk).update(created_at=one.created_at)
        two.refresh_from_db()
    assert export_filename(one) != export_filename(two)
    assert export_filename(one).startswith(f"atrium-export-aaaaaaaa-{one.created_at:%Y%m%d-%H%M%S}-")

"""Shared fixtures and helpers of the compliance console's browser tests (test_console_browser*.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chat.browser import (
    Site,
    site_fixture,
)
from tests.conftest import WebServer

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc00000030101009a2b6d4f0000000049454e44ae426082")
ANSWER = ("## Pear varieties\n\n| Kind | Taste |\n|---|---|\n| Conference | sweet |\n| Comice | buttery |\n\n"
          "```python\nprint('pear')\n```\n\n<img src=x onerror=\"window.__owned=1\">")
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def site(web: WebServer, browser: Any, django_db_blocker: Any) -> Iterator[Site]:
    yield from site_fixture(web, browser, {
        "cora": ("alpha", "compliance_officer"), "bob": ("alpha", "basic_user"), "aud": ("alpha", "viewer"),
        "exp": ("alpha", "viewer"),
    }, django_db_blocker)


@pytest.fixture(scope="module", autouse=True)
def partial_rights(site: Site, django_db_blocker: Any) -> None:
    """aud may only read the audit trail; exp may only export."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django_tenants.utils import schema_context

    with django_db_blocker.unblock(), schema_context("alpha"):
        for who, codename in (("aud", "view_audit"), ("exp", "export_data")):
            user = get_user_model().objects.get(pk=site.people[who].pk)
            user.user_permissions.add(Permission.objects.get(content_type__app_label="audit", codename=codename))


def _subject(django_db_blocker: Any, *, attach: bool = True) -> Any:
    """A committed user of alpha with a conversation (Markdown answer, an attached image)."""
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django_tenants.utils import schema_context

    from inference.models import Attachment, Conversation, Message

    with django_db_blocker.unblock(), schema_context("alpha"):
        name = f"subject-{uuid.uuid4().hex[:6]}"
        user = get_user_model().objects.create_user(username=name, email=f"{name}@example.com")
        conversation = Conversation.objects.create(user=user, model="claude-sonnet-5-5", title="Pears & <b>plums</b>",
                                                   system="Answer like a grocer.")
        blocks: list[dict[str, Any]] = []
        if attach:
            attachment = Attachment(conversation=conversation, name="crate.png", content_type="image/png",
                                    size=len(PNG))
            attachment.file.save(str(attachment.id), SimpleUploadedFile("crate.png", PNG), save=False)
            attachment.save()
            blocks.append({"type": "image", "title": "crate.png",
                           "source": {"type": "attachment", "id": str(attachment.id), "media_type": "image/png"}})
        Message.objects.create(conversation=conversation, role="user",
                               content=[*blocks, {"type": "text", "text": "Which pears?\n    (indented)"}])
        Message.objects.create(conversation=conversation, role="assistant", model="claude-sonnet-5-5",
                               content=[{"type": "text", "text": ANSWER}])
        return user


def _run(job_id: str, django_db_blocker: Any) -> None:
    from django_tenants.utils import schema_context

    from audit.gdpr import gdpr_run

    with django_db_blocker.unblock(), schema_context("alpha"):
        assert gdpr_run(job_id) == "done"


def _job_of(subject: Any, kind: str, django_db_blocker: Any) -> str:
    from django_tenants.utils import schema_context

    from audit.models import GdprJob

    with django_db_blocker.unblock(), schema_context("alpha"):
        return str(GdprJob.objects.filter(kind=kind, subject_id=subject.pk).latest("created_at").id)


def _no_reload_marker(page: Any) -> None:
    page.evaluate("() => { window.__sameDocument = 'yes'; }")


def _same_document(page: Any) -> bool:
    return bool(page.evaluate("() => window.__sameDocument === 'yes'"))


def _entries(django_db_blocker: Any, event_type: str, count: int, subject_pk: int) -> None:
    from django.db import transaction
    from django_tenants.utils import schema_context

    from audit.chain import pseudonym, tenant_key
    from audit.services import audit_record

    with django_db_blocker.unblock(), schema_context("alpha"), transaction.atomic():
        ref = pseudonym(tenant_key(), subject_pk)
        for i in range(count):
            audit_record(event_type=event_type, user_id=subject_pk, personal={"username": "ignored"},
                         metadata={"subject": ref, "counts": {"conversations": i, "messages": 2 * i},
                                   "added": ["power_user"], "source": "admin"})

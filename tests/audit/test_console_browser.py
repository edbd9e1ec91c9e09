"""The compliance console in Chromium (Playwright), at 1280 px and 390 px: an export requested, followed without a
reload and opened (its transcript read in the browser), a deletion's signed receipt viewed and downloaded, the audit
table paged and filtered with readable details, and every console URL refused to users without its permission.

Jobs are queued by the real server; the test runs them in its own process (audit.gdpr.gdpr_run, the code a Celery
worker runs; tests/audit/test_gdpr_worker.py covers the worker itself), so the page is seen while a job is queued,
running and done.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.chat.browser import (
    NARROW,
    VIEWPORTS,
    WIDE,
    Site,
    axe_violations,
    no_errors,
    no_sideways_panning,
    site_fixture,
)
from tests.chat.conftest import simulator, web  # noqa: F401 - module-scoped fixtures: one server for the module
from tests.conftest import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None and not os.path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (make test-deps installs it)")]

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc00000030101009a2b6d4f0000000049454e44ae426082")
ANSWER = ("## Pear varieties\n\n| Kind | Taste |\n|---|---|\n| Conference | sweet |\n| Comice | buttery |\n\n"
          "```python\nprint('pear')\n```\n\n<img src=x onerror=\"window.__owned=1\">")
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def site(web: WebServer, browser: Any, django_db_blocker: Any) -> Iterator[Site]:  # noqa: F811
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


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_export_followed_without_reload_then_opened_and_its_transcript_read(
        site: Site, viewport: dict[str, int], django_db_blocker: Any, tmp_path: Path) -> None:
    subject = _subject(django_db_blocker)
    page = site.page("cora", viewport)
    page.goto(site.url("alpha", "/compliance/"))
    page.fill("#subject", subject.username)
    page.click("#request-export")
    page.wait_for_url(re.compile(r".*/compliance/$"))
    job_id = _job_of(subject, "export", django_db_blocker)
    row = page.locator(f"#jobs tr[data-job='{job_id}']")
    assert row.locator(".status").inner_text().startswith("queued")
    assert row.locator(".requester").inner_text() == site.people["cora"].username
    assert row.locator(".subject").inner_text() == subject.email

    # While the job runs, the officer types a filter; the page follows the job without reloading.
    _no_reload_marker(page)
    page.fill("#filter-user", "typed, not submitted")
    _run(job_id, django_db_blocker)
    row.locator("a.download").wait_for()
    assert row.locator(".status").inner_text().startswith("done") and row.locator("progress").get_attribute(
        "value") == "100"
    assert _same_document(page) and page.input_value("#filter-user") == "typed, not submitted"

    with page.expect_download() as download:
        row.locator("a.download").click()
    name = download.value.suggested_filename
    assert re.fullmatch(r"atrium-export-[0-9a-f]{8}-\d{8}-\d{6}-" + job_id[:8] + r"\.zip", name)
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    names = archive.namelist()
    assert "conversations.json" in names and len(names) == len(set(names))
    assert all(info.date_time[0] >= 2026 for info in archive.infolist()), "no 1980-01-01 entries"
    transcript = next(n for n in names if n.startswith("transcripts/"))
    assert re.fullmatch(r"transcripts/\d{4}-\d{2}-\d{2}-Pears-b-plums-b-[0-9a-f]{8}\.html", transcript)
    attachment = next(n for n in names if n.startswith("attachments/"))
    assert archive.read(attachment) == PNG
    archive.extractall(tmp_path)

    # The transcript, opened as a person would: the title, the table and code rendered, the image linked, the
    # model's raw HTML shown as text and never run.
    reader = site.page(None, viewport)
    reader.goto((tmp_path / transcript).as_uri())
    assert reader.inner_text("h1") == "Pears & <b>plums</b>"
    assert reader.locator("article.assistant h2").nth(1).inner_text() == "Pear varieties"
    assert reader.locator("article.assistant table th").all_inner_texts() == ["Kind", "Taste"]
    assert reader.locator("article.assistant pre code").inner_text().strip() == "print('pear')"
    assert reader.locator("article.user pre.plain").inner_text() == "Which pears?\n    (indented)"
    assert "Answer like a grocer." in reader.inner_text("#system")
    assert 'onerror="window.__owned=1"' in reader.inner_text("article.assistant")
    assert reader.evaluate("() => window.__owned") is None and reader.locator("article img").count() == 0
    href = reader.locator("article.user .files a").get_attribute("href") or ""
    assert (tmp_path / transcript).parent.joinpath(href).resolve().read_bytes() == PNG
    no_sideways_panning(reader)
    no_sideways_panning(page)
    no_errors(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_progress_updates_in_place_and_keeps_what_is_typed(site: Site, viewport: dict[str, int],
                                                           django_db_blocker: Any) -> None:
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from audit.models import GdprJob

    with django_db_blocker.unblock(), schema_context("alpha"):
        job = GdprJob.objects.create(kind="deletion", status="running", progress=10, step="conversations",
                                     subject_label=f"progress-{uuid.uuid4().hex[:6]}@example.com",
                                     subject_ref=uuid.uuid4().hex, requested_by_id=site.people["cora"].pk)
    try:
        page = site.page("cora", viewport)
        page.goto(site.url("alpha", "/compliance/"))
        row = page.locator(f"#jobs tr[data-job='{job.id}']")
        assert row.locator("progress").get_attribute("value") == "10"
        _no_reload_marker(page)
        page.fill("#subject", "half-typed name")
        page.fill("#filter-user", "someone")
        with django_db_blocker.unblock(), schema_context("alpha"):
            GdprJob.objects.filter(pk=job.pk).update(progress=55, step="audit")
        page.wait_for_function(f"() => document.querySelector(\"tr[data-job='{job.id}'] progress\").value === 55")
        assert row.locator(".step").inner_text() == "audit" and row.locator(".pct").inner_text() == "55%"
        # A job requested meanwhile (another officer, another tab) appears on top.
        with django_db_blocker.unblock(), schema_context("alpha"):
            other = GdprJob.objects.create(kind="export", status="queued", subject_label="newcomer@example.com",
                                           subject_ref=uuid.uuid4().hex)
        page.locator(f"#jobs tr[data-job='{other.id}']").wait_for()
        assert page.locator("#jobs tbody tr").first.get_attribute("data-job") == str(other.id)
        with django_db_blocker.unblock(), schema_context("alpha"):
            GdprJob.objects.filter(pk=job.pk).update(status="done", progress=100, step="done",
                                                     finished_at=timezone.now(),
                                                     counts={"conversations": 3, "messages": 9})
            GdprJob.objects.filter(pk=other.pk).update(status="failed", error="RuntimeError: disk full")
        row.locator(".result", has_text="3 conversations, 9 messages deleted").wait_for()
        page.locator(f"#jobs tr[data-job='{other.id}'] button", has_text="Retry").wait_for()
        assert row.locator("a.receipt").count() == 1
        assert page.inner_text("#jobs-status")  # announced to screen readers
        assert _same_document(page)
        assert page.input_value("#subject") == "half-typed name" and page.input_value("#filter-user") == "someone"
        no_sideways_panning(page)
        no_errors(page)
    finally:
        with django_db_blocker.unblock(), schema_context("alpha"):
            GdprJob.objects.filter(subject_label__in=[job.subject_label, "newcomer@example.com"]).delete()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_deletion_receipt_viewed_and_downloaded_signed(site: Site, viewport: dict[str, int],
                                                       django_db_blocker: Any, tmp_path: Path) -> None:
    from audit.receipts import receipt_verify

    subject = _subject(django_db_blocker, attach=False)
    page = site.page("cora", viewport)
    page.goto(site.url("alpha", "/compliance/"))
    page.fill("#subject", subject.username)
    page.check("input[name=confirm]")
    page.click("#request-deletion")
    page.wait_for_url(re.compile(r".*/compliance/$"))
    job_id = _job_of(subject, "deletion", django_db_blocker)
    _run(job_id, django_db_blocker)
    row = page.locator(f"#jobs tr[data-job='{job_id}']")
    row.locator("a.receipt").wait_for()
    assert "1 conversation, 2 messages deleted" in row.locator(".result").inner_text()
    row.locator("a.receipt").click()
    page.wait_for_url(re.compile(rf".*/compliance/receipts/{job_id}/$"))
    facts = page.inner_text("#receipt")
    assert job_id in facts and site.people["cora"].username in facts and "Deleted: conversations\t1" in facts
    assert subject.username not in page.content(), "the receipt names no deleted person"
    with page.expect_download() as download:
        page.click("#receipt-download")
    name = download.value.suggested_filename
    assert re.fullmatch(rf"deletion-receipt-{job_id[:8]}-\d{{8}}-\d{{6}}\.html", name)
    document = Path(download.value.path()).read_text()
    assert receipt_verify(document)[0], receipt_verify(document)[1]
    forged = document.replace("&quot;conversations&quot;: 1", "&quot;conversations&quot;: 0")
    assert forged != document and receipt_verify(forged) == (
        False, "the signature does not match: the receipt was changed or signed with another key")
    # The document reads on its own, offline.
    (tmp_path / name).write_text(document)
    reader = site.page(None, viewport)
    reader.goto((tmp_path / name).as_uri())
    assert reader.inner_text("h1") == "Deletion receipt" and job_id in reader.inner_text("table")
    no_sideways_panning(page)
    no_errors(page)


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


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_audit_table_pages_filters_and_reads_well(site: Site, viewport: dict[str, int],
                                                  django_db_blocker: Any) -> None:
    event = f"console_test_{uuid.uuid4().hex[:6]}"
    _entries(django_db_blocker, event, 60, site.people["bob"].pk)
    page = site.page("cora", viewport)
    page.goto(site.url("alpha", "/compliance/"))
    page.select_option("#filter-event", event)
    page.click("#filter-apply")
    page.wait_for_url(re.compile(rf".*event_type={event}.*"))
    assert page.inner_text("#audit-count").startswith("Entries 1\u201325 of 60")
    assert page.locator("#audit tbody tr").count() == 25
    first = page.locator("#audit tbody tr").first
    details = first.locator("td.details").inner_text()
    bob = site.people["bob"].username
    assert f"About user\n{bob}" in details.replace("\t", "\n")
    assert "conversations 59" in details and "messages 118" in details
    assert "Roles added\npower_user" in details.replace("\t", "\n")
    assert "{" not in details and "'" not in details, "no Python or JSON reprs"
    page.click("#page-next")
    page.wait_for_url(re.compile(r".*page=2$"))
    assert page.inner_text("#audit-count").startswith("Entries 26\u201350 of 60")
    assert page.locator("#filter-event").input_value() == event, "the filter stays while paging"
    page.click("#page-last")
    page.wait_for_url(re.compile(r".*page=3$"))
    assert page.locator("#audit tbody tr").count() == 10 and "Page 3 of 3" in page.inner_text(".pager")
    # The download carries the same filter and the chain proofs.
    href = page.get_attribute("#audit-export", "href") or ""
    assert f"event_type={event}" in href
    lines = page.request.get(site.url("alpha", href)).text().strip().splitlines()
    entries = [json.loads(line) for line in lines if json.loads(line).get("type") == "entry"]
    assert len(entries) == 60 and all(e["chained"]["event_type"] == event for e in entries)
    # Filter by user (username) and by date.
    page.fill("#filter-user", bob)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    page.fill("#filter-since", tomorrow)
    page.click("#filter-apply")
    page.wait_for_url(re.compile(r".*since=.*"))
    page.locator("#audit tbody td.muted", has_text="No entries match").wait_for()
    page.click("#filter-clear")
    page.wait_for_url(re.compile(r".*/compliance/$"))
    assert page.locator("#audit tbody tr").count() == 25
    no_sideways_panning(page)
    no_errors(page)


CONSOLE_URLS = [("GET", "/compliance/"), ("GET", "/compliance/jobs.json"), ("POST", "/compliance/jobs/export/"),
                ("POST", "/compliance/jobs/deletion/"), ("POST", "/compliance/jobs/{job}/retry/"),
                ("POST", "/compliance/verify/"), ("GET", "/compliance/audit/export.jsonl"),
                ("GET", "/compliance/receipts/{job}/"), ("GET", "/compliance/receipts/{job}/download/"),
                ("GET", "/compliance/exports/{export}/download/")]
# What each partial right may reach; every other console URL answers 403.
ALLOWED = {
    "aud": {"/compliance/", "/compliance/jobs.json", "/compliance/verify/", "/compliance/audit/export.jsonl",
            "/compliance/receipts/{job}/", "/compliance/receipts/{job}/download/"},
    "exp": {"/compliance/", "/compliance/jobs.json", "/compliance/jobs/export/",
            "/compliance/exports/{export}/download/"},
}


def test_every_console_url_refuses_the_wrong_side(site: Site, django_db_blocker: Any) -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from audit.models import DeletionReceipt, GdprJob

    stored = default_storage.save(f"exports/alpha/{uuid.uuid4()}.zip", ContentFile(b"PK\x05\x06" + b"\0" * 18))
    with django_db_blocker.unblock(), schema_context("alpha"):
        job = GdprJob.objects.create(kind="deletion", status="failed", subject_ref=uuid.uuid4().hex,
                                     subject_label="wrong-side@example.com", error="x")
        DeletionReceipt.objects.create(job=job, subject_ref=job.subject_ref, requested_at=timezone.now(),
                                       completed_at=timezone.now(), counts={}, account_action="removed")
        export = GdprJob.objects.create(kind="export", status="done", subject_ref=uuid.uuid4().hex,
                                        subject_label="wrong-side@example.com", file=stored,
                                        expires_at=timezone.now() + timedelta(days=1))
    try:
        for who in ("bob", "aud", "exp"):
            page = site.page(who, WIDE)
            page.goto(site.url("alpha", "/chat/"))
            token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
            for method, template in CONSOLE_URLS:
                allowed = template in ALLOWED.get(who, set())
                if allowed and template == "/compliance/verify/":
                    continue  # performing it would append a committed audit_verified entry for later tests to find
                url = site.url("alpha", template.format(job=job.id, export=export.id))
                if method == "GET":
                    response = page.request.get(url, max_redirects=0)
                else:
                    response = page.request.post(url, form={"subject": "nobody"}, headers={"X-CSRFToken": token},
                                                 max_redirects=0)
                if allowed:
                    assert response.status in (200, 302), (who, method, template, response.status)
                else:
                    assert response.status == 403, (who, method, template, response.status)
            if who == "bob":
                refused = site.page(who, NARROW)
                refused.goto(site.url("alpha", "/compliance/"))
                assert "needs the permission" in refused.inner_text("main")
                no_sideways_panning(refused)
                refused.errors.clear()  # the 403 document itself is logged by the browser
            page.errors.clear()
    finally:
        with django_db_blocker.unblock(), schema_context("alpha"):
            DeletionReceipt.objects.filter(job=job).delete()
            GdprJob.objects.filter(pk__in=[job.pk, export.pk]).delete()


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_in_the_console(site: Site, viewport: dict[str, int], scheme: str,
                                                       django_db_blocker: Any) -> None:
    from django_tenants.utils import schema_context

    from audit.models import DeletionReceipt

    _entries(django_db_blocker, "console_axe", 3, site.people["bob"].pk)
    found = {}
    page = site.page("cora", viewport, color_scheme=scheme)
    page.goto(site.url("alpha", "/compliance/"))
    found["/compliance/"] = axe_violations(page)
    no_sideways_panning(page)
    with django_db_blocker.unblock(), schema_context("alpha"):
        receipt = DeletionReceipt.objects.order_by("-completed_at").first()
    if receipt is not None:
        page.goto(site.url("alpha", f"/compliance/receipts/{receipt.job_id}/"))
        found["receipt"] = axe_violations(page)
        no_sideways_panning(page)
    no_errors(page)
    assert not any(found.values()), json.dumps(found, indent=1)


def test_screenshots_for_the_docs(site: Site, django_db_blocker: Any, tmp_path: Path) -> None:
    """The pictures in docs/compliance.md; written there with ATRIUM_SCREENSHOTS=1, else to a temp dir."""
    target = DOCS_IMAGES if os.environ.get("ATRIUM_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    subject = _subject(django_db_blocker, attach=False)
    page = site.page("cora", {"width": 1280, "height": 1100})
    page.goto(site.url("alpha", "/compliance/"))
    page.fill("#subject", subject.username)
    page.click("#request-export")
    _run(_job_of(subject, "export", django_db_blocker), django_db_blocker)
    page.reload()
    page.screenshot(path=str(target / "compliance-console.png"))
    page.evaluate("() => document.querySelector('#audit-filters').closest('.card').scrollIntoView()")
    page.screenshot(path=str(target / "compliance-audit.png"))
    narrow = site.page("cora", NARROW)
    narrow.goto(site.url("alpha", "/compliance/"))
    narrow.screenshot(path=str(target / "compliance-390.png"))
    receipt = page.locator("#jobs a.receipt").first
    if receipt.count():
        receipt.click()
        page.locator("#receipt").wait_for()
        page.screenshot(path=str(target / "compliance-receipt.png"))
    shots = sorted(p.name for p in target.glob("compliance-*.png"))
    assert {"compliance-console.png", "compliance-audit.png", "compliance-390.png"} <= set(shots)

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
import re
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.audit.console_browser import (  # noqa: F401 - module-scoped fixtures: one server for the module
    PNG,
    _entries,
    _job_of,
    _no_reload_marker,
    _run,
    _same_document,
    _subject,
    partial_rights,
    site,
)
from tests.chat.browser import (
    BROWSER_MARKS,
    VIEWPORTS,
    Site,
    no_errors,
    no_sideways_panning,
)
from tests.chat.conftest import simulator, web  # noqa: F401 - module-scoped fixtures: one server for the module

pytestmark = BROWSER_MARKS


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

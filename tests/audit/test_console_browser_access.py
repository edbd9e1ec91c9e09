"""The compliance console in Chromium, continued: every console URL walked from the wrong side (a user without
the action's permission gets 403), axe-core on the console and a receipt in light and dark, and the docs'
screenshots."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.audit.console_browser import (  # noqa: F401 - module-scoped fixtures: one server for the module
    DOCS_IMAGES,
    _entries,
    _job_of,
    _run,
    _subject,
    partial_rights,
    site,
)
from tests.chat.browser import (
    BROWSER_MARKS,
    NARROW,
    VIEWPORTS,
    WIDE,
    Site,
    axe_violations,
    no_errors,
    no_sideways_panning,
)
from tests.chat.conftest import simulator, web  # noqa: F401 - module-scoped fixtures: one server for the module

pytestmark = BROWSER_MARKS


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

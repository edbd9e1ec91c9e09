"""The compliance console's server side: readable audit details, deletion receipts signed and verifiable offline
(manage.py verify_receipt), and a user's own job list as JSON. The browser tests are test_console_browser.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from audit import gdpr
from audit.chain import pseudonym, tenant_key
from audit.details import entry_details, names_for
from audit.models import AuditEntry, DeletionReceipt
from audit.receipts import receipt_document, receipt_verify

pytestmark = pytest.mark.django_db


def test_details_name_existing_users_and_never_print_reprs(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    from audit.services import audit_record

    target = make_user(tenant_a, "basic_user", username="details-target")
    with in_tenant(tenant_a):
        ref = pseudonym(tenant_key(), target.pk)
        gone = "f" * 32
        entry = audit_record(event_type="role_change", metadata={
            "subject": ref, "added": ["power_user"], "removed": [], "other": gone, "ok": True,
            "attempts": [{"provider": "anthropic", "status": 529}, {"provider": "bedrock", "status": 200}]})
        entry = AuditEntry.objects.get(pk=entry.pk)
        details = dict(entry_details(entry, names_for([entry])))
    assert details["About user"] == "details-target" and details["Roles added"] == "power_user"
    assert details["Roles removed"] == "—" and details["Other"] == "pseudonym ffffffffffff" and details["Ok"] == "yes"
    assert details["Attempts"] == "provider anthropic, status 529; provider bedrock, status 200"
    assert not any("{" in v or "[" in v for v in details.values())


def test_receipt_document_verifies_offline_and_a_change_is_caught(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                                  tmp_path: Path, settings: Any) -> None:
    subject = make_user(tenant_a, "basic_user", username="receipt-subject")
    officer = make_user(tenant_a, "compliance_officer", username="receipt-officer")
    with in_tenant(tenant_a):
        job = gdpr.gdpr_request(kind="deletion", subject=subject, requested_by=officer)
        assert gdpr.gdpr_run(str(job.id)) == "done"
        document = receipt_document(DeletionReceipt.objects.get(job=job))
    assert "receipt-subject" not in document, "no personal data in the receipt"
    path = tmp_path / "receipt.html"
    path.write_text(document)
    call_command("verify_receipt", str(path))
    path.write_text(document.replace("&quot;account&quot;: &quot;", "&quot;account&quot;: &quot;x"))
    with pytest.raises(CommandError, match="signature does not match"):
        call_command("verify_receipt", str(path))
    settings.ATRIUM_AUDIT_CHECKPOINT_KEY = "another-installation"
    assert receipt_verify(document)[0] is False
    with pytest.raises(CommandError, match="cannot read"):
        call_command("verify_receipt", str(tmp_path / "missing.html"))


def test_my_jobs_json_lists_only_my_exports(tenant_a: Any, make_user: Any, in_tenant: Any, client_a: Any) -> None:
    me = make_user(tenant_a, "basic_user", username="jobs-me")
    other = make_user(tenant_a, "basic_user", username="jobs-other")
    with in_tenant(tenant_a):
        mine = gdpr.gdpr_request(kind="export", subject=me, requested_by=me)
        gdpr.gdpr_request(kind="export", subject=other, requested_by=other)
        client_a.force_login(me)
    jobs = client_a.get("/account/data/jobs.json").json()["jobs"]
    assert [j["id"] for j in jobs] == [str(mine.id)] and jobs[0]["requested_by"] == "the user themselves"
    assert client_a.get("/compliance/jobs.json").status_code == 403

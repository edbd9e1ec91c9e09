"""GDPR exports and deletions (run in-process here; tests/audit/test_gdpr_worker.py uses a real worker),
retention, export expiry and the compliance console."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.utils import timezone

from audit import gdpr
from audit.chain import chain_verify
from audit.models import AuditEntry, DeletionReceipt, GdprJob
from tests.audit.conftest import columns_holding_user_id, tables_mentioning, user_with_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(tenant_a: Any, tenant_b: Any, make_user: Any, in_tenant: Any) -> dict[str, Any]:
    subject = make_user(tenant_a, "basic_user", username="subject-user", first_name="Qwfirst", last_name="Zqxlast")
    other = make_user(tenant_a, "basic_user", username="other-user")
    officer = make_user(tenant_a, "compliance_officer", username="officer-user")
    foreign = make_user(tenant_b, "basic_user", username="foreign-user")
    with in_tenant(tenant_a):
        made = user_with_data(subject, conversations=4, ip="203.0.113.7")
        user_with_data(other, conversations=2)
    with in_tenant(tenant_b):
        user_with_data(foreign, conversations=1)
    return {"subject": subject, "other": other, "officer": officer, "foreign": foreign, "made": made}


def _zip(job: GdprJob) -> zipfile.ZipFile:
    with default_storage.open(job.file, "rb") as fh:
        return zipfile.ZipFile(io.BytesIO(fh.read()))


def test_export_is_complete_and_only_about_the_subject(people: dict[str, Any], tenant_a: Any,
                                                        in_tenant: Any) -> None:
    with in_tenant(tenant_a):
        job = gdpr.gdpr_request(kind="export", subject=people["subject"], requested_by=people["officer"])
        assert gdpr.gdpr_run(str(job.id)) == "done"
        job.refresh_from_db()
        assert job.status == "done" and job.progress == 100 and job.expires_at > timezone.now()
        archive = _zip(job)
        names = set(archive.namelist())
        assert {"README.json", "profile.json", "conversations.json", "preferences.json", "consents.json",
                "usage.json", "api_keys.json", "audit_summary.json"} <= names
        readme = json.loads(archive.read("README.json"))
        assert readme["format"] == "atrium-gdpr-export" and set(readme["files"]) <= names
        conversations = json.loads(archive.read("conversations.json"))
        assert len(conversations) == people["made"]["conversations"]
        assert {c["model"] for c in conversations} == {"claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-5-5"}
        assert sum(len(c["messages"]) for c in conversations) == people["made"]["messages"]
        assert conversations[0]["messages"][0]["content"][0]["text"] == "subject-user says 0.0"
        assert json.loads(archive.read("profile.json"))["email"] == "subject-user@example.com"
        assert json.loads(archive.read("preferences.json"))[0]["settings"] == {"theme": "dark"}
        assert json.loads(archive.read("usage.json"))[0]["requests"] == 4
        assert len(json.loads(archive.read("consents.json"))) == 1
        assert json.loads(archive.read("api_keys.json"))[0]["name"] == "laptop"
        assert any(e["event_type"] == "login" for e in json.loads(archive.read("audit_summary.json")))
        everything = b"".join(archive.read(n) for n in names)
        for stranger in ("other-user", "foreign-user", "officer-user"):
            assert stranger.encode() not in everything
        assert AuditEntry.objects.filter(event_type="export_completed").exists()


def test_download_link_is_personal_and_expires(people: dict[str, Any], tenant_a: Any, in_tenant: Any,
                                               client_a: Any, settings: Any) -> None:
    """The signed-in session is the credential (no token in the URL): tests/security/test_export_download.py has
    the refusals in full."""
    from django.test import Client

    from tests.conftest import tenant_host

    with in_tenant(tenant_a):
        job = gdpr.gdpr_request(kind="export", subject=people["subject"], requested_by=people["officer"])
        gdpr.gdpr_run(str(job.id))
        job.refresh_from_db()

    def client_for(user: Any) -> Client:
        client = Client(HTTP_HOST=tenant_host(tenant_a))
        with in_tenant(tenant_a):
            client.force_login(user)
        return client

    url = f"/compliance/exports/{job.id}/download/"
    ok = client_for(people["officer"]).get(url)
    assert ok.status_code == 200 and ok["Content-Type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(b"".join(ok.streaming_content))).namelist()
    assert client_for(people["subject"]).get(url).status_code == 200
    refused = client_for(people["other"]).get(url)
    assert refused.status_code == 403 and b"Only the person exported" in refused.content
    with in_tenant(tenant_a):
        assert AuditEntry.objects.filter(event_type="export_downloaded", metadata__job=str(job.id)).count() == 2
        GdprJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client_for(people["officer"]).get(url)
    assert expired.status_code == 410 and b"expired" in expired.content


@pytest.mark.parametrize("action", ["remove", "deactivate"])
def test_deletion_leaves_no_personal_data_and_chain_verifies(action: str, people: dict[str, Any], tenant_a: Any,
                                                              in_tenant: Any) -> None:
    from django.contrib.auth import get_user_model

    from tenants.models import Tenant

    Tenant.objects.filter(pk=tenant_a.pk).update(gdpr_account_action=action)
    subject = people["subject"]
    with in_tenant(tenant_a):
        earlier = gdpr.gdpr_request(kind="export", subject=subject, requested_by=subject)
        gdpr.gdpr_run(str(earlier.id))
        earlier.refresh_from_db()
        export_file = earlier.file
        job = gdpr.gdpr_request(kind="deletion", subject=subject, requested_by=people["officer"])
        assert gdpr.gdpr_run(str(job.id)) == "done"
        job.refresh_from_db()
        assert job.status == "done" and job.subject_id is None and job.subject_label == ""
        assert job.counts["conversations"] == people["made"]["conversations"]
        assert job.counts["messages"] == people["made"]["messages"]
        for needle in ("subject-user", "subject-user@example.com", "203.0.113.7", "Qwfirst", "Zqxlast"):
            assert tables_mentioning(needle) == [], needle
        if action == "remove":
            assert columns_holding_user_id(subject.pk) == []
            assert not get_user_model().objects.filter(pk=subject.pk).exists()
        else:
            user = get_user_model().objects.get(pk=subject.pk)
            assert not user.is_active and not user.has_usable_password() and user.email == ""
            assert [c for c in columns_holding_user_id(subject.pk) if c != "auth_user.id"] == []
        assert not default_storage.exists(export_file)
        assert chain_verify().ok
        receipt = DeletionReceipt.objects.get(job=job)
        assert receipt.counts["conversations"] == people["made"]["conversations"]
        assert receipt.account_action == action and receipt.subject_ref == job.subject_ref
        # Other users keep their data.
        assert tables_mentioning("other-user")
        assert AuditEntry.objects.filter(event_type="deletion_completed", metadata__job=str(job.id)).count() == 1
    assert mail.outbox and mail.outbox[-1].to == ["subject-user@example.com"]


def test_deletion_is_idempotent(people: dict[str, Any], tenant_a: Any, in_tenant: Any) -> None:
    with in_tenant(tenant_a):
        job = gdpr.gdpr_request(kind="deletion", subject=people["subject"], requested_by=people["officer"])
        again = gdpr.gdpr_request(kind="deletion", subject=people["subject"], requested_by=people["officer"])
        assert again.pk == job.pk, "an active job is not duplicated"
        gdpr.gdpr_run(str(job.id))
        assert gdpr.gdpr_run(str(job.id)) == "skipped"
        # Even forced to run again (as a resumed worker would), nothing is done twice.
        GdprJob.objects.filter(pk=job.pk).update(status="running", lease_until=None)
        gdpr.gdpr_run(str(job.id))
        job.refresh_from_db()
        assert DeletionReceipt.objects.filter(job=job).count() == 1
        assert AuditEntry.objects.filter(event_type="deletion_completed", metadata__job=str(job.id)).count() == 1
        assert job.counts["conversations"] == people["made"]["conversations"]


def test_failed_job_can_be_retried(people: dict[str, Any], tenant_a: Any, in_tenant: Any,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with in_tenant(tenant_a):
        job = gdpr.gdpr_request(kind="export", subject=people["subject"], requested_by=people["officer"])

        def broken(job: Any) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(gdpr.jobs, "export_run", broken)
        assert gdpr.gdpr_run(str(job.id)) == "failed"
        job.refresh_from_db()
        assert job.status == "failed" and "disk full" in job.error
        monkeypatch.undo()
        gdpr.gdpr_retry(job, by=people["officer"])
        assert job.status == "queued"
        assert gdpr.gdpr_run(str(job.id)) == "done"


def test_officer_cannot_delete_themselves(people: dict[str, Any], tenant_a: Any, in_tenant: Any) -> None:
    with in_tenant(tenant_a), pytest.raises(gdpr.JobRefused):
        gdpr.gdpr_request(kind="deletion", subject=people["officer"], requested_by=people["officer"])


def test_retention_deletes_only_older_conversations(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    from inference.models import Conversation
    from tenants.models import Tenant

    user = make_user(tenant_a, "basic_user")
    Tenant.objects.filter(pk=tenant_a.pk).update(retention_days=30)
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    with in_tenant(tenant_a):
        old = Conversation.objects.create(user=user, model="claude-haiku-5-5", title="old")
        recent = Conversation.objects.create(user=user, model="claude-haiku-5-5", title="recent")
        fresh = Conversation.objects.create(user=user, model="claude-haiku-5-5", title="fresh")
        Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=31))
        Conversation.objects.filter(pk=recent.pk).update(updated_at=timezone.now() - timedelta(days=29))
        deleted = gdpr.retention_run(tenant)
        remaining = set(Conversation.objects.filter(user=user).values_list("pk", flat=True))
        assert remaining == {recent.pk, fresh.pk}
        assert deleted >= 1
        entry = AuditEntry.objects.filter(event_type="retention_run").order_by("-seq").first()
        assert entry is not None and entry.metadata["conversations"] == deleted


def test_export_expiry_deletes_the_file(people: dict[str, Any], tenant_a: Any, in_tenant: Any) -> None:
    with in_tenant(tenant_a):
        job = gdpr.gdpr_request(kind="export", subject=people["subject"], requested_by=people["subject"])
        gdpr.gdpr_run(str(job.id))
        job.refresh_from_db()
        GdprJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        assert gdpr.export_expire() == 1
        assert not default_storage.exists(job.file)
        job.refresh_from_db()
        assert job.status == "expired" and job.file == ""


def test_compliance_console_access_and_requests(people: dict[str, Any], tenant_a: Any, in_tenant: Any,
                                                client_a: Any) -> None:
    with in_tenant(tenant_a):
        client_a.force_login(people["other"])
    assert client_a.get("/compliance/").status_code == 403
    with in_tenant(tenant_a):
        client_a.force_login(people["officer"])
    page = client_a.get("/compliance/")
    assert page.status_code == 200 and b"Audit trail" in page.content
    client_a.post("/compliance/jobs/export/", {"subject": "subject-user@example.com"})
    client_a.post("/compliance/jobs/deletion/", {"subject": "subject-user"})  # not confirmed
    with in_tenant(tenant_a):
        assert GdprJob.objects.filter(kind="export", subject_id=people["subject"].pk).count() == 1
        assert not GdprJob.objects.filter(kind="deletion", subject_id=people["subject"].pk).exists()
    client_a.post("/compliance/jobs/deletion/", {"subject": "subject-user", "confirm": "yes"})
    with in_tenant(tenant_a):
        assert GdprJob.objects.filter(kind="deletion", subject_id=people["subject"].pk).count() == 1
    jobs = client_a.get("/compliance/jobs.json").json()["jobs"]
    mine = [j for j in jobs if j["subject"] == "subject-user@example.com"]
    assert sorted(j["kind"] for j in mine) == ["deletion", "export"]
    filtered = client_a.get("/compliance/?event_type=login&user=subject-user").content.decode()
    assert "login" in filtered
    verify = client_a.post("/compliance/verify/", follow=True)
    assert b"chain intact" in verify.content


def test_user_requests_own_export(people: dict[str, Any], tenant_a: Any, in_tenant: Any, client_a: Any) -> None:
    with in_tenant(tenant_a):
        client_a.force_login(people["subject"])
    assert client_a.post("/account/data/").status_code == 302
    with in_tenant(tenant_a):
        job = GdprJob.objects.get(kind="export", subject_id=people["subject"].pk)
        gdpr.gdpr_run(str(job.id))
    page = client_a.get("/account/data/").content.decode()
    assert "Download ZIP" in page and f'href="/compliance/exports/{job.id}/download/"' in page


def test_auditor_without_export_permission_gets_no_download_link(people: dict[str, Any], tenant_a: Any,
                                                                 in_tenant: Any, client_a: Any, make_user: Any) -> None:
    from django.contrib.auth.models import Permission

    auditor = make_user(tenant_a, None, username="auditor-only")
    with in_tenant(tenant_a):
        auditor.user_permissions.add(Permission.objects.get(codename="view_audit"))
        job = gdpr.gdpr_request(kind="export", subject=people["subject"], requested_by=people["officer"])
        gdpr.gdpr_run(str(job.id))
        client_a.force_login(auditor)
    jobs = client_a.get("/compliance/jobs.json").json()["jobs"]
    mine = next(j for j in jobs if j["id"] == str(job.id))
    assert mine["status"] == "done" and "download" not in mine
    page = client_a.get("/compliance/")
    assert page.status_code == 200 and b"Request a job" not in page.content


def test_an_export_interrupted_by_the_database_is_not_failed_and_its_retry_completes_it_once(
        people: dict[str, Any], tenant_a: Any, in_tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database goes away mid-export (here: an OperationalError at the first progress save): the job is not
    marked failed, its lease is given back, and the error is raised for the task's retry (audit.tasks.gdpr_run,
    TRANSIENT_RETRY), which builds the archive again and completes the job once. tests/audit/test_gdpr_worker.py
    does it to a real worker's connection."""
    import os

    from django.conf import settings
    from django.db import OperationalError

    from audit.gdpr import export, jobs

    monkeypatch.setattr(jobs, "connections_reset", lambda: None, raising=False)  # the test's transaction
    cuts: list[int] = []

    def away() -> None:
        if not cuts:
            cuts.append(1)
            raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(export, "batch_pause", away)
    tmp = os.path.join(settings.MEDIA_ROOT, "tmp")
    before = set(os.listdir(tmp)) if os.path.isdir(tmp) else set()
    with in_tenant(tenant_a):
        job = gdpr.gdpr_request(kind="export", subject=people["subject"], requested_by=people["officer"])
        with pytest.raises(OperationalError):  # the old code returned "failed" and marked the job so
            gdpr.gdpr_run(str(job.id))
        job.refresh_from_db()
        assert (job.status, job.lease_until, job.error) == ("running", None, "")
        assert not job.file and not AuditEntry.objects.filter(event_type="export_failed").exists()
        assert set(os.listdir(tmp)) == before, "the unfinished archive was removed"
        assert gdpr.gdpr_run(str(job.id)) == "done"  # the retry
        assert gdpr.gdpr_run(str(job.id)) == "skipped"
        job.refresh_from_db()
        assert job.status == "done" and job.attempts == 2
        assert AuditEntry.objects.filter(event_type="export_completed", metadata__job=str(job.id)).count() == 1
        conversations = json.loads(_zip(job).read("conversations.json"))
        assert len(conversations) == people["made"]["conversations"]


def test_the_daily_retention_task_interrupted_by_the_database_is_retried_not_left_for_tomorrow(
        tenant_a: Any, in_tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beat sends retention once a day: a run that meets the database away (here once) is sent again with backoff
    (TRANSIENT_RETRY; run eagerly here), instead of failing until the next day's run."""
    from django.db import OperationalError

    from audit.tasks import retention_run

    calls: list[int] = []
    run = gdpr.retention_run

    def once_away(tenant: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return run(tenant)

    monkeypatch.setattr(gdpr, "retention_run", once_away)
    result = retention_run.apply(headers={"_schema_name": tenant_a.schema_name})
    assert result.successful(), result.result  # the old task failed with the OperationalError
    assert result.get() == 0 and len(calls) == 2

"""Issue 14, "no secret ever travels in a URL": GDPR export downloads were links carrying a signed token. Now the
signed-in session is the only credential, checked against the job (subject or audit.export_data) at every download;
a link of the old kind is refused, and nobody else, in this tenant or another, gets the file."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import signing
from django.test import Client

from audit import gdpr
from audit.models import AuditEntry
from tests.conftest import tenant_host

pytestmark = pytest.mark.django_db


@pytest.fixture
def export(tenant_a: Any, tenant_b: Any, make_user: Any, in_tenant: Any) -> dict[str, Any]:
    subject = make_user(tenant_a, "basic_user")
    officer = make_user(tenant_a, "compliance_officer")
    auditor = make_user(tenant_a, None)
    with in_tenant(tenant_a):
        from django.contrib.auth.models import Permission

        auditor.user_permissions.add(Permission.objects.get(codename="view_audit"))
        job = gdpr.gdpr_request(kind="export", subject=subject, requested_by=officer)
        assert gdpr.gdpr_run(str(job.id)) == "done"
        job.refresh_from_db()
    return {"job": job, "subject": subject, "officer": officer, "other": make_user(tenant_a, "basic_user"),
            "auditor": auditor, "foreign_officer": make_user(tenant_b, "compliance_officer")}


def _client(tenant: Any, user: Any, in_tenant: Any) -> Client:
    client = Client(HTTP_HOST=tenant_host(tenant))
    if user is not None:
        with in_tenant(tenant):
            client.force_login(user)
    return client


def test_links_carry_no_secret_and_the_session_decides(export: dict[str, Any], tenant_a: Any, in_tenant: Any) -> None:
    job = export["job"]
    url = f"/compliance/exports/{job.id}/download/"
    officer = _client(tenant_a, export["officer"], in_tenant)
    listed = next(j for j in officer.get("/compliance/jobs.json").json()["jobs"] if j["id"] == str(job.id))
    assert listed["download"] == url  # no query string, nothing secret
    page = _client(tenant_a, export["subject"], in_tenant).get("/account/data/").content.decode()
    assert f'href="{url}"' in page and "token=" not in page
    got = officer.get(url)
    assert got.status_code == 200 and got["Content-Type"] == "application/zip"
    assert "no-store" in got["Cache-Control"] or "max-age=0" in got["Cache-Control"]
    assert _client(tenant_a, export["subject"], in_tenant).get(url).status_code == 200
    with in_tenant(tenant_a):
        assert AuditEntry.objects.filter(event_type="export_downloaded", metadata__job=str(job.id)).count() == 2


def test_an_old_style_token_link_no_longer_works(export: dict[str, Any], tenant_a: Any, in_tenant: Any) -> None:
    job = export["job"]
    url = f"/compliance/exports/{job.id}/download/"
    # What the old code issued: a signed {"job", "user"} under the download salt, valid for the export's lifetime.
    token = signing.dumps({"job": str(job.id), "user": export["officer"].pk}, salt="atrium.export-download")
    anonymous = _client(tenant_a, None, in_tenant).get(f"{url}?token={token}")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    # Even its own holder, signed in, is told to use the page: the token is never honoured.
    refused = _client(tenant_a, export["officer"], in_tenant).get(f"{url}?token={token}")
    assert refused.status_code == 400 and b"no longer carry a token" in refused.content
    assert refused["Content-Type"].startswith("text/html")


def test_no_one_else_downloads(export: dict[str, Any], tenant_a: Any, tenant_b: Any, in_tenant: Any) -> None:
    job = export["job"]
    url = f"/compliance/exports/{job.id}/download/"
    other = _client(tenant_a, export["other"], in_tenant).get(url)
    assert other.status_code == 403 and b"Only the person exported" in other.content
    # audit.view_audit alone is not audit.export_data.
    auditor = _client(tenant_a, export["auditor"], in_tenant).get(url)
    assert auditor.status_code == 403
    # Another tenant's compliance officer on their own host: the job is not in their schema.
    assert _client(tenant_b, export["foreign_officer"], in_tenant).get(url).status_code == 404
    # And alpha's session cookie is worth nothing on beta's host.
    officer = _client(tenant_a, export["officer"], in_tenant)
    cross = officer.get(url, HTTP_HOST=tenant_host(tenant_b))
    assert cross.status_code == 302 and cross["Location"].startswith("/accounts/login/")
    with in_tenant(tenant_a):
        assert not AuditEntry.objects.filter(event_type="export_downloaded", metadata__job=str(job.id)).exists()
    # POST is not a way around it either.
    assert _client(tenant_a, export["officer"], in_tenant).post(url).status_code == 405

"""Audit export: a filtered slice as JSON Lines with its proofs, verified offline (no database); tampering fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from audit.chain import pseudonym, tenant_key
from audit.models import AuditEntry
from audit.services import audit_record
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def checkpoint_dir(settings: Any, tmp_path: Path) -> None:
    settings.ATRIUM_AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")


@pytest.fixture
def officer(tenant_a: Any, make_user: Any, in_tenant: Any, client_a: Any) -> Any:
    user = make_user(tenant_a, "compliance_officer")
    with in_tenant(tenant_a):
        client_a.force_login(user)
    return user


def _download(client: Any, tmp_path: Path, **params: str) -> Path:
    response = client.get("/compliance/audit/export.jsonl", params)
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"].startswith('attachment; filename="atrium-audit-alpha-')
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    return path


def _offline(path: Path, key: bytes) -> subprocess.CompletedProcess[str]:
    """The verifier in a process with no database settings at all: it must need none."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    # `--key=…`: a base64url key may start with "-", which argparse would take for an option.
    return subprocess.run([sys.executable, "-m", "audit.offline_verify", str(path), f"--key={key.decode()}",
                           f"--checkpoint-key={settings.ATRIUM_AUDIT_CHECKPOINT_KEY}"], cwd="/", env=env,
                          capture_output=True, text=True, check=False)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_filtered_slice_verifies_offline_and_the_download_is_audited(tenant_a: Any, in_tenant: Any,
                                                                     make_user: Any, officer: Any,
                                                                     client_a: Any, tmp_path: Path) -> None:
    subject = make_user(tenant_a, "basic_user")
    with in_tenant(tenant_a):
        for i in range(4):
            audit_record(event_type="export_probe", user=subject, metadata={"i": i})
            audit_record(event_type="other_event", metadata={"i": i})
        key = tenant_key()
    path = _download(client_a, tmp_path, event_type="export_probe", user=subject.username)
    records = _records(path)
    assert records[0]["type"] == "header" and records[-1]["type"] == "trailer"
    entries = [r for r in records if r["type"] == "entry"]
    assert len(entries) == 4
    assert {e["chained"]["event_type"] for e in entries} == {"export_probe"}
    assert {e["chained"]["actor"] for e in entries} == {pseudonym(key, subject.pk)}
    assert all(e["mac"] and e["prev_mac"] and e["checkpoint_seq"] >= e["seq"] for e in entries)
    assert any(r["type"] == "checkpoint" and r["signature"] for r in records)
    assert subject.username not in path.read_text()  # personal columns are not exported
    result = _offline(path, key)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 4 entries, every MAC, link and checkpoint signature verifies"
    with in_tenant(tenant_a):
        exported = AuditEntry.objects.filter(event_type="audit_exported").order_by("-seq").first()
        assert exported is not None and exported.user_id == officer.pk
        assert exported.metadata["filters"] == {"event_type": "export_probe", "actor": pseudonym(key, subject.pk)}


def test_unfiltered_range_links_and_covers_every_entry(tenant_a: Any, in_tenant: Any, officer: Any,
                                                       client_a: Any, tmp_path: Path) -> None:
    with in_tenant(tenant_a):
        for i in range(5):
            audit_record(event_type="range_probe", metadata={"i": i})
        key = tenant_key()
        head = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    path = _download(client_a, tmp_path)
    entries = [r for r in _records(path) if r["type"] == "entry"]
    assert [e["seq"] for e in entries] == list(range(1, (head or 0) + 2))  # +1: the export's own entry
    assert _offline(path, key).returncode == 0


@pytest.mark.parametrize("tamper", ["edit_field", "drop_entry", "swap_entries", "forge_checkpoint", "cut_short"])
def test_tampered_file_fails_with_a_clear_message(tamper: str, tenant_a: Any, in_tenant: Any, officer: Any,
                                                  client_a: Any, tmp_path: Path) -> None:
    with in_tenant(tenant_a):
        for i in range(4):
            audit_record(event_type="tamper_probe", metadata={"i": i}, output_tokens=10)
        key = tenant_key()
    path = _download(client_a, tmp_path, event_type="tamper_probe")
    lines = path.read_text().splitlines()
    entry_lines = [i for i, line in enumerate(lines) if json.loads(line)["type"] == "entry"]
    target = entry_lines[1]
    record = json.loads(lines[target])
    if tamper == "edit_field":
        record["chained"]["output_tokens"] = 99999
        lines[target] = json.dumps(record, sort_keys=True)
        expected = f"entry #{record['seq']}: MAC does not match its content"
    elif tamper == "drop_entry":
        del lines[target]
        expected = "trailer digest does not match"
    elif tamper == "swap_entries":
        lines[entry_lines[1]], lines[entry_lines[2]] = lines[entry_lines[2]], lines[entry_lines[1]]
        expected = f"comes after entry #{json.loads(lines[entry_lines[1]])['seq']} (reordered)"
    elif tamper == "forge_checkpoint":
        index = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "checkpoint")
        checkpoint = json.loads(lines[index])
        checkpoint["seq"] += 1000
        lines[index] = json.dumps(checkpoint, sort_keys=True)
        expected = f"checkpoint of head #{checkpoint['seq']} has an invalid signature"
    else:
        lines = lines[:-2]
        expected = "no trailer line: the export is cut short"
    path.write_text("\n".join(lines) + "\n")
    result = _offline(path, key)
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr
    assert all(line.startswith("FAILED: ") for line in result.stderr.strip().splitlines())


def test_wrong_key_and_missing_file_are_one_clear_line(tenant_a: Any, in_tenant: Any, officer: Any,
                                                       client_a: Any, tmp_path: Path) -> None:
    path = _download(client_a, tmp_path)
    result = _offline(path, b"not-the-key")
    assert result.returncode == 1 and "the key given is not this chain's key" in result.stderr
    missing = _offline(tmp_path / "nope.jsonl", b"k")
    assert missing.returncode == 2 and missing.stderr.strip().startswith("offline_verify: cannot read")


def test_export_needs_view_audit_and_good_filters(tenant_a: Any, in_tenant: Any, make_user: Any,
                                                  client_a: Any) -> None:
    plain = make_user(tenant_a, "basic_user")
    with in_tenant(tenant_a):
        client_a.force_login(plain)
        before = AuditEntry.objects.filter(event_type="audit_exported").count()
    assert client_a.get("/compliance/audit/export.jsonl").status_code == 403
    exporter = make_user(tenant_a, None)
    from django.contrib.auth.models import Permission

    with in_tenant(tenant_a):
        exporter.user_permissions.add(Permission.objects.get(codename="export_data"))  # GDPR exports only
        client_a.force_login(exporter)
    assert client_a.get("/compliance/audit/export.jsonl").status_code == 403
    officer = make_user(tenant_a, "compliance_officer")
    with in_tenant(tenant_a):
        client_a.force_login(officer)
    assert client_a.get("/compliance/audit/export.jsonl", {"since": "not-a-date"}).status_code == 400
    assert client_a.get("/compliance/audit/export.jsonl", {"user": "nobody-at-all"}).status_code == 400
    with in_tenant(tenant_a):
        assert AuditEntry.objects.filter(event_type="audit_exported").count() == before
    page = client_a.get("/compliance/", {"event_type": "login"})
    assert b'href="/compliance/audit/export.jsonl?event_type=login"' in page.content

"""Chat attachments through the API: only with access.use_vision, type and size checked, stored per tenant, files
removed with their conversation (the user's delete and GDPR erasure), listed in the GDPR export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inference.models import Attachment, Conversation
from tests.chat.conftest import sse_events

pytestmark = pytest.mark.django_db

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc00000030101009a2b6d4f0000000049454e44ae426082")
PDF = b"%PDF-1.4\n%%EOF\n"


def _signed_in(client: Any, user: Any, tenant: Any, in_tenant: Any) -> Any:
    with in_tenant(tenant):
        client.force_login(user)
    return client


def _conversation(client: Any) -> str:
    return str(client.post("/api/conversations/", data=json.dumps({"model": "claude-sonnet-5-5"}),
                           content_type="application/json").json()["id"])


def _upload(client: Any, cid: str, name: str, data: bytes, content_type: str = "image/png") -> Any:
    return client.post(f"/api/conversations/{cid}/attachments/",
                       {"file": SimpleUploadedFile(name, data, content_type=content_type)})


def test_upload_needs_vision_and_checks_type_and_size(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                                      in_tenant: Any, settings: Any) -> None:
    basic = _signed_in(client_a, make_user(tenant_a, "basic_user"), tenant_a, in_tenant)
    cid = _conversation(basic)
    refused = _upload(basic, cid, "a.png", PNG)
    assert refused.status_code == 403 and "access.use_vision" in refused.json()["error"]["message"]

    power = _signed_in(client_a, make_user(tenant_a, "power_user"), tenant_a, in_tenant)
    cid = _conversation(power)
    fake = _upload(power, cid, "a.png", b"<html><script>alert(1)</script>", "image/png")
    assert fake.status_code == 415, "the type comes from the bytes, not the name or the browser"
    settings.ATRIUM_CHAT_ATTACHMENT_MAX_BYTES = 10
    assert _upload(power, cid, "big.pdf", PDF, "application/pdf").status_code == 413
    settings.ATRIUM_CHAT_ATTACHMENT_MAX_BYTES = 5 * 1024 * 1024
    image = _upload(power, cid, "../../etc/a.png", PNG)
    assert image.status_code == 201 and image.json()["content_type"] == "image/png"
    assert image.json()["name"] == "a.png", "no path from the client survives"
    with in_tenant(tenant_a):
        stored = Attachment.objects.get(pk=image.json()["id"])
        assert stored.file.name == f"{tenant_a.schema_name}/attachments/{cid}/{stored.id}"
    assert power.get(f"/chat/attachments/{stored.id}/").status_code == 200
    # Another user of the same tenant gets nothing (the conversation is not shared).
    other = _signed_in(client_a.__class__(HTTP_HOST=client_a.defaults["HTTP_HOST"]),
                       make_user(tenant_a, "power_user"), tenant_a, in_tenant)
    assert other.get(f"/chat/attachments/{stored.id}/").status_code == 404
    assert _upload(other, cid, "a.png", PNG).status_code == 404


def test_sent_attachments_reach_the_model_and_leave_with_the_conversation(
        sim: Any, client_a: Any, tenant_a: Any, make_user: Any, in_tenant: Any, settings: Any,
        django_capture_on_commit_callbacks: Any) -> None:
    power = _signed_in(client_a, make_user(tenant_a, "power_user"), tenant_a, in_tenant)
    cid = _conversation(power)
    ids = [_upload(power, cid, "a.png", PNG).json()["id"],
           _upload(power, cid, "r.pdf", PDF, "application/pdf").json()["id"]]
    events = sse_events(power.post(f"/api/conversations/{cid}/messages/", data=json.dumps(
        {"content": "Describe these", "attachments": ids}), content_type="application/json"))
    assert events[-1]["event"] == "atrium.saved" and events[-1]["message_id"]
    assert events[0]["message"]["usage"]["input_tokens"] > 375, "the image was counted in the model's input"
    with in_tenant(tenant_a):
        files = [Path(settings.MEDIA_ROOT) / a.file.name for a in Attachment.objects.filter(conversation_id=cid)]
        assert len(files) == 2 and all(f.exists() for f in files)
    again = power.post(f"/api/conversations/{cid}/messages/", data=json.dumps(
        {"content": "Again", "attachments": ids[:1]}), content_type="application/json")
    assert again.status_code == 400, "an attachment is sent once"
    with django_capture_on_commit_callbacks(execute=True):
        assert power.delete(f"/api/conversations/{cid}/").status_code == 204
    assert not any(f.exists() for f in files)


def test_gdpr_erasure_and_export_include_attachments(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                                     in_tenant: Any, settings: Any,
                                                     django_capture_on_commit_callbacks: Any) -> None:
    from inference import personal_data

    user = make_user(tenant_a, "power_user")
    power = _signed_in(client_a, user, tenant_a, in_tenant)
    cid = _conversation(power)
    aid = _upload(power, cid, "scan.pdf", PDF, "application/pdf").json()["id"]
    sse_events(power.post(f"/api/conversations/{cid}/messages/", data=json.dumps(
        {"content": "Summarise", "attachments": [aid]}), content_type="application/json"))
    with in_tenant(tenant_a):
        import io

        stream = io.BytesIO()
        personal_data._conversations_write(user.pk, stream, lambda _p: None)
        exported = json.loads(stream.getvalue())
        assert exported[0]["attachments"][0]["name"] == "scan.pdf"
        path = Path(settings.MEDIA_ROOT) / Attachment.objects.get(pk=aid).file.name
        assert path.exists()
        with django_capture_on_commit_callbacks(execute=True):
            assert personal_data._conversations_erase(user.pk, 100)["conversations"] == 1
        assert not Conversation.objects.filter(pk=cid).exists() and not Attachment.objects.filter(pk=aid).exists()
    assert not path.exists()


def test_a_role_without_vision_cannot_send_an_attachment_row(sim: Any, client_a: Any, tenant_a: Any,
                                                             make_user: Any, in_tenant: Any) -> None:
    """Even with an attachment row in its conversation (made here directly), the gateway's policy refuses."""
    basic = _signed_in(client_a, make_user(tenant_a, "basic_user"), tenant_a, in_tenant)
    cid = _conversation(basic)
    with in_tenant(tenant_a):
        attachment = Attachment(conversation_id=cid, name="a.png", content_type="image/png", size=len(PNG))
        attachment.file.save(str(attachment.id), SimpleUploadedFile("a.png", PNG), save=False)
        attachment.save()
    refused = basic.post(f"/api/conversations/{cid}/messages/", data=json.dumps(
        {"content": "look", "attachments": [str(attachment.id)]}), content_type="application/json")
    assert refused.status_code == 403 and "access.use_vision" in refused.json()["error"]["message"]

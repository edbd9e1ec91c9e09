"""Conversations API and web chat pages: ownership, streaming turns, retry and versions, consent, safe pages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inference.models import Conversation, Message
from tests.chat.conftest import sse_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(tenant_a: Any, make_user: Any, client_a: Any, in_tenant: Any) -> Any:
    user = make_user(tenant_a, "basic_user")
    with in_tenant(tenant_a):
        client_a.force_login(user)
    return user


def _create(client: Any, model: str = "claude-sonnet-5-5", **extra: Any) -> Any:
    return client.post("/api/conversations/", data=json.dumps({"model": model, **extra}),
                       content_type="application/json")


def _send(client: Any, conversation_id: str, content: str, **extra: Any) -> Any:
    return client.post(f"/api/conversations/{conversation_id}/messages/",
                       data=json.dumps({"content": content, **extra}), content_type="application/json")


def test_create_list_retrieve_rename_delete(sim: Any, client_a: Any, alice: Any) -> None:
    created = _create(client_a, title="First")
    assert created.status_code == 201
    cid = created.json()["id"]
    assert created.json()["model"] == "claude-sonnet-5-5"
    for n in range(3):
        assert _create(client_a, title=f"more {n}").status_code == 201
    listing = client_a.get("/api/conversations/?page_size=2").json()
    assert listing["count"] == 4 and len(listing["results"]) == 2 and listing["next"]
    detail = client_a.get(f"/api/conversations/{cid}/").json()
    assert detail["title"] == "First" and detail["messages"] == []
    renamed = client_a.patch(f"/api/conversations/{cid}/", data=json.dumps({"title": "Renamed"}),
                             content_type="application/json")
    assert renamed.status_code == 200 and renamed.json()["title"] == "Renamed"
    assert client_a.delete(f"/api/conversations/{cid}/").status_code == 204
    assert client_a.get(f"/api/conversations/{cid}/").status_code == 404


def test_create_refuses_models_the_user_may_not_use(sim: Any, client_a: Any, alice: Any) -> None:
    response = _create(client_a, model="claude-opus-5-5")
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    assert _create(client_a, model="nope").status_code == 404
    bad = client_a.post("/api/conversations/", data="{}", content_type="application/json")
    assert bad.status_code == 400 and "model" in bad.json()["error"]["message"]


def test_send_streams_and_saves_both_messages(sim: Any, client_a: Any, alice: Any, tenant_a: Any,
                                              in_tenant: Any) -> None:
    cid = _create(client_a).json()["id"]
    response = _send(client_a, cid, "Explain **quotas**")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = sse_events(response)
    assert events[0]["type"] == "message_start"
    # The saved question is named before the answer streams, so a client that stops the answer keeps it.
    assert events[1]["event"] == "atrium.question"
    saved = events[-1]
    assert saved["event"] == "atrium.saved" and saved["incomplete"] is False
    assert events[1]["question_id"] == saved["question_id"]
    assert "html" not in saved, "one Markdown pipeline: the browser renders the saved text, as on reload"
    with in_tenant(tenant_a):
        conversation = Conversation.objects.get(pk=cid)
        roles = list(conversation.messages.order_by("created_at").values_list("role", flat=True))
        assert roles == ["user", "assistant"]
        answer = conversation.messages.get(role="assistant")
        assert str(answer.id) == saved["message_id"] and answer.provider == "anthropic" and answer.output_tokens > 0
        assert conversation.title == "Explain **quotas**"
    # The history goes back to the model with the next message.
    sse_events(_send(client_a, cid, "And tokens?"))
    assert json.loads(json.dumps(client_a.get(f"/api/conversations/{cid}/").json()))["messages"][2]["role"] == "user"
    usage = client_a.get("/api/usage/me/").json()
    assert usage["requests"] == 2 and usage["output_tokens"] > 0


def test_retry_keeps_the_previous_answer_as_a_version(sim: Any, client_a: Any, alice: Any, tenant_a: Any,
                                                      in_tenant: Any) -> None:
    cid = _create(client_a).json()["id"]
    sse_events(_send(client_a, cid, "Once"))
    with in_tenant(tenant_a):
        first = Message.objects.get(conversation_id=cid, role="assistant")
        question = Message.objects.get(conversation_id=cid, role="user")
    events = sse_events(client_a.post(f"/api/conversations/{cid}/retry/", data="{}", content_type="application/json"))
    assert events[-1]["event"] == "atrium.saved" and events[-1]["versions"] == 2
    with in_tenant(tenant_a):
        answers = list(Message.objects.filter(conversation_id=cid, role="assistant").order_by("created_at"))
        assert answers[0].id == first.id and len(answers) == 2
        assert [a.active for a in answers] == [False, True]
        assert {a.version_group for a in answers} == {question.id}
        assert Message.objects.filter(conversation_id=cid, role="user").count() == 1
    # Choosing the first version again makes it the one the conversation continues from.
    chosen = client_a.post(f"/api/conversations/{cid}/messages/{first.id}/activate/")
    assert chosen.status_code == 204
    with in_tenant(tenant_a):
        assert list(Message.objects.filter(conversation_id=cid, role="assistant", active=True)
                    .values_list("id", flat=True)) == [first.id]
    assert client_a.post(f"/api/conversations/{cid}/messages/{question.id}/activate/").status_code == 400


def test_retry_after_a_stop_answers_the_stopped_question(sim: Any, client_a: Any, alice: Any, tenant_a: Any,
                                                         in_tenant: Any) -> None:
    """The reported bug: Stop before the first word saved an empty answer, and Retry then answered the question
    before the stopped one (the empty answer was left out of the history, and then one more message was cut)."""
    cid = _create(client_a).json()["id"]
    sse_events(_send(client_a, cid, "First question about apples"))
    with in_tenant(tenant_a):
        conversation = Conversation.objects.get(pk=cid)
        stopped_question = Message.objects.create(conversation=conversation, role="user",
                                                  content=[{"type": "text", "text": "Second question about pears"}])
        Message.objects.create(conversation=conversation, role="assistant", content=[], incomplete=True,
                               version_group=stopped_question.id)
    events = sse_events(client_a.post(f"/api/conversations/{cid}/retry/", data="{}", content_type="application/json"))
    text = "".join(e["delta"]["text"] for e in events if e.get("type") == "content_block_delta")
    assert "Second question about pears" in text and "apples" not in text
    with in_tenant(tenant_a):
        active = list(Message.objects.filter(conversation_id=cid, active=True).order_by("created_at"))
        assert [m.role for m in active] == ["user", "assistant", "user", "assistant"]
        assert active[-1].version_group == stopped_question.id and not active[-1].incomplete


def test_edit_a_question_and_resend(sim: Any, client_a: Any, alice: Any, tenant_a: Any, in_tenant: Any) -> None:
    cid = _create(client_a).json()["id"]
    sse_events(_send(client_a, cid, "Tell me about cats"))
    sse_events(_send(client_a, cid, "And their food"))
    with in_tenant(tenant_a):
        original = Message.objects.filter(conversation_id=cid, role="user").order_by("created_at").first()
    events = sse_events(_send(client_a, cid, "Tell me about dogs", edit_of=str(original.id)))
    text = "".join(e["delta"]["text"] for e in events if e.get("type") == "content_block_delta")
    assert "dogs" in text
    detail = client_a.get(f"/api/conversations/{cid}/").json()
    active = [m for m in detail["messages"] if m["active"]]
    assert [m["role"] for m in active] == ["user", "assistant"]
    assert active[0]["content"][-1]["text"] == "Tell me about dogs"
    assert len(detail["messages"]) == 6, "the earlier branch is kept, inactive"
    bad = _send(client_a, cid, "x", edit_of=str(active[1]["id"]))
    assert bad.status_code == 400 and "edit_of" in bad.json()["error"]["message"]


def test_refusals_come_back_as_json_before_any_stream(sim: Any, client_a: Any, alice: Any, tenant_a: Any,
                                                      tenant_update: Any, in_tenant: Any) -> None:
    cid = _create(client_a).json()["id"]
    forbidden = _send(client_a, cid, "hi", model="claude-opus-5-5")
    assert forbidden.status_code == 403 and "access.use_opus" in forbidden.json()["error"]["message"]
    tenant_update(tenant_a, requests_per_minute=0)
    limited = _send(client_a, cid, "hi")
    assert limited.status_code == 429 and limited["retry-after"]
    with in_tenant(tenant_a):
        assert not Message.objects.filter(conversation_id=cid).exists(), "refused turns save nothing"


def test_ownership_across_users_and_tenants(sim: Any, client_a: Any, client_b: Any, alice: Any, tenant_a: Any,
                                            tenant_b: Any, make_user: Any, in_tenant: Any) -> None:
    from django.test import Client

    from tests.conftest import tenant_host

    cid = _create(client_a).json()["id"]
    sse_events(_send(client_a, cid, "private"))
    bob = make_user(tenant_a, "basic_user")
    other = Client(HTTP_HOST=tenant_host(tenant_a))
    with in_tenant(tenant_a):
        other.force_login(bob)
    assert other.get(f"/api/conversations/{cid}/").status_code == 404
    assert other.patch(f"/api/conversations/{cid}/", data='{"title": "x"}',
                       content_type="application/json").status_code == 404
    assert other.delete(f"/api/conversations/{cid}/").status_code == 404
    assert _send(other, cid, "hijack").status_code == 404
    assert other.get("/api/conversations/").json()["count"] == 0
    assert other.get(f"/chat/{cid}/").status_code == 404
    carol = make_user(tenant_b, "basic_user")
    with in_tenant(tenant_b):
        client_b.force_login(carol)
    assert client_b.get(f"/api/conversations/{cid}/").status_code == 404
    assert client_a.get("/api/conversations/not-a-uuid/").status_code == 404


def test_api_requires_authentication(sim: Any, client_a: Any) -> None:
    assert client_a.get("/api/conversations/").status_code in (401, 403)


def test_consent_gate_on_web_chat_and_api(sim: Any, client_a: Any, alice: Any, tenant_a: Any,
                                          tenant_update: Any) -> None:
    tenant_update(tenant_a, processing_notice="We keep conversations 30 days.")
    page = client_a.get("/chat/")
    assert page.status_code == 302 and page["Location"].startswith("/consent/")
    cid = _create(client_a).json()["id"]
    refused = _send(client_a, cid, "hello")
    assert refused.status_code == 403 and "/consent/" in refused.json()["error"]["message"]
    notice_page = client_a.get("/consent/")
    assert b"We keep conversations 30 days." in notice_page.content
    accepted = client_a.post("/consent/", {"action": "accept", "version": "1", "next": "/chat/"})
    assert accepted.status_code == 302 and accepted["Location"] == "/chat/"
    assert client_a.get("/chat/").status_code == 200
    assert _send(client_a, cid, "hello").status_code == 200
    client_a.post("/consent/", {"action": "withdraw"})
    assert client_a.get("/chat/").status_code == 302


def test_chat_page_offers_only_permitted_models(sim: Any, client_a: Any, alice: Any) -> None:
    page = client_a.get("/chat/").content.decode()
    assert 'value="claude-sonnet-5-5"' in page and 'value="claude-haiku-5-5"' in page
    assert 'value="claude-opus-5-5"' not in page


def test_model_output_is_rendered_without_script(sim: Any, client_a: Any, alice: Any) -> None:
    cid = _create(client_a).json()["id"]
    attack = '<script>alert(1)</script> <img src=x onerror=alert(2)> [x](javascript:alert(3))'
    sse_events(_send(client_a, cid, attack))
    page = client_a.get(f"/chat/{cid}/").content.decode()
    assert "<script>alert" not in page and "<img" not in page and 'href="javascript:' not in page
    assert page.count("&lt;script&gt;alert(1)") >= 2  # the question and the answer's echo, both as text


def test_openapi_schema_and_docs(sim: Any, client_a: Any, alice: Any) -> None:
    schema = client_a.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/conversations/" in paths and "/api/conversations/{conversation_id}/messages/" in paths
    docs = client_a.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn.jsdelivr.net" not in docs.content and b"/static/drf_spectacular_sidecar/" in docs.content


def test_oversized_message_is_a_clear_error(sim: Any, client_a: Any, alice: Any, settings: Any) -> None:
    cid = _create(client_a).json()["id"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = _send(client_a, cid, "x" * 20_000)
    assert response.status_code == 413, response.content
    assert "larger than" in response.json()["error"]["message"]

"""A batch request holding a NUL (U+0000) is stored until it runs, in jsonb, which cannot hold one: it was a 500
(nothing stored, the client told nothing useful). Now a 400 naming the field, nothing stored; and a result holding
one (a provider's answer) is stored with U+FFFD, rather than failing its call's records and running again forever
(docs/decisions.md, "Text PostgreSQL cannot store")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inference.models import MessageBatch, MessageBatchRequest
from tests.chat.test_v1_batches import basic, no_queue, request  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("item", "where"), [
    (request("a", text="x\x00y"), "requests.0.params.messages.0.content"),
    (request("a", metadata={"user_id": "\x00"}), "requests.0.params.metadata.user_id"),
    (request("a", system=[{"type": "text", "text": "ok"}, {"type": "text", "text": "s\x00"}]),
     "requests.0.params.system.1.text"),
])
def test_a_batch_request_with_nul_is_a_400_naming_the_field(item: Any, where: str, sim: Any, client_a: Any,
                                                            basic: Any, no_queue: Any) -> None:  # noqa: F811
    client_a.raise_request_exception = False
    response = client_a.post("/v1/messages/batches", data=json.dumps({"requests": [item]}),
                             content_type="application/json", HTTP_X_API_KEY=basic[1])
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{where}: holds a NUL character (U+0000)")
    assert not MessageBatch.objects.exists() and no_queue == [] and sim.requests() == []


def test_a_result_with_nul_is_stored_replaced(sim: Any, client_a: Any, basic: Any, no_queue: Any,  # noqa: F811
                                              tenant_a: Any, in_tenant: Any) -> None:
    from inference.batches import _store

    created = client_a.post("/v1/messages/batches", data=json.dumps({"requests": [request("a")]}),
                            content_type="application/json", HTTP_X_API_KEY=basic[1])
    assert created.status_code == 200, created.content[:300]
    with in_tenant(tenant_a):
        item = MessageBatchRequest.objects.get(custom_id="a")
        _store(item, "succeeded", {"type": "succeeded", "message": {"content": [{"type": "text", "text": "a\x00b"}],
                                                                    "stop_sequence": "\udc80"}})
        item.refresh_from_db()
        assert item.result_type == "succeeded"
        assert item.result["message"] == {"content": [{"type": "text", "text": "a\ufffdb"}],
                                          "stop_sequence": "\ufffd"}

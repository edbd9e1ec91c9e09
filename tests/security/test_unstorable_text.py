"""Text PostgreSQL cannot store, sent from outside: a NUL (U+0000) or a lone surrogate where Atrium records it.
A header of the call (the User-Agent, kept in the audit entry's personal fields) made the call's record fail after
the provider had answered: a 500 in the request thread, a record retried forever by the batch writer. Now the
entry is stored with U+FFFD in their place and the chain verifies; a model name with NUL is a 400 before anything
goes upstream (docs/decisions.md, "Text PostgreSQL cannot store")."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.chat.conftest import body

pytestmark = pytest.mark.django_db

MODEL = "claude-haiku-5-5"


@pytest.fixture
def key(tenant_a: Any, make_user: Any, api_key_for: Any) -> str:
    return str(api_key_for(tenant_a, make_user(tenant_a, "basic_user")))


def _post(raw: dict[str, Any], key: str, **headers: str) -> Any:
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    return client.post("/v1/messages", data=json.dumps(raw), content_type="application/json", HTTP_X_API_KEY=key,
                       **headers)


@pytest.mark.parametrize("agent", ["curl\x00/8", "curl\udc80/8"])
def test_a_user_agent_with_nul_or_a_lone_surrogate_is_recorded_replaced(agent: str, sim: Any, key: str,
                                                                        tenant_a: Any, in_tenant: Any) -> None:
    from audit.chain import chain_verify
    from audit.models import AuditEntry

    response = _post(body("hi", model=MODEL), key, HTTP_USER_AGENT=agent)
    assert response.status_code == 200, response.content[:300]
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(request_id=response["request-id"])
        assert "curl\ufffd/8" in json.dumps(entry.personal, ensure_ascii=False)
        assert chain_verify().ok


def test_a_model_name_with_nul_is_a_400_before_any_provider_call(sim: Any, key: str) -> None:
    response = _post(body("hi", model=MODEL + "\x00"), key)
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "model: holds a NUL character (U+0000); no model id does."
    assert sim.requests() == []


def test_a_prompt_and_metadata_with_nul_are_served_and_recorded(sim: Any, key: str, tenant_a: Any,
                                                               in_tenant: Any) -> None:
    """The prompt is recorded as its keyed hash, the metadata's user id is not recorded: both pass."""
    from audit.models import AuditEntry

    raw = body("a\x00b", model=MODEL)
    raw["metadata"] = {"user_id": "u\x00"}
    raw["system"] = "s\x00"
    response = _post(raw, key)
    assert response.status_code == 200, response.content[:300]
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(request_id=response["request-id"])
        assert (entry.event_type, entry.status) == ("model_call", "success")

"""Issue 14, "permissions": the vision permission sees images and documents wherever they are nested.

The finding: a `document` block inside a `tool_result` passed the vision check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chat.conftest import post_messages

pytestmark = pytest.mark.django_db

PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}


def _tool_turns(result_content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Read the file"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": result_content}]},
    ]


CASES = {
    "image at the top": [{"role": "user", "content": [{"type": "image", "source": PNG}]}],
    "document at the top": [{"role": "user", "content": [{"type": "document", "source": PDF}]}],
    "document in a tool_result": _tool_turns([{"type": "document", "source": PDF}]),
    "image in a tool_result": _tool_turns([{"type": "text", "text": "see"}, {"type": "image", "source": PNG}]),
    "image two levels down": _tool_turns([{"type": "search_result", "source": "x", "title": "t",
                                           "content": [{"type": "image", "source": PNG}]}]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_vision_blocks_refused_wherever_nested(case: str, sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                               api_key_for: Any) -> None:
    user = make_user(tenant_a, "basic_user")  # the seeded basic_user role has no access.use_vision
    key = api_key_for(tenant_a, user)
    response = post_messages(client_a, key, {"model": "claude-haiku-5-5", "max_tokens": 16,
                                             "messages": CASES[case]})
    assert response.status_code == 403, response.content
    error = json.loads(response.content)["error"]
    assert error["type"] == "permission_error" and "access.use_vision" in error["message"]
    assert sim.requests() == []  # nothing reached a provider


def test_text_only_tool_result_still_allowed(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                             api_key_for: Any) -> None:
    plain = make_user(tenant_a, "basic_user")
    response = post_messages(client_a, api_key_for(tenant_a, plain), {
        "model": "claude-haiku-5-5", "max_tokens": 16,
        "messages": _tool_turns([{"type": "text", "text": "the file says hello"}])})
    assert response.status_code == 200, response.content
    assert len(sim.requests()) == 1

"""The chat service behind the conversations API and the web chat: a conversation's next answer, streamed.

Admission (consent, policy, quota) happens before anything is saved; the user's message is saved once admitted;
the assistant's answer is saved in the same transaction as its usage and audit entry (gateway `persist`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from inference.api_v1 import sse
from inference.gateway import Admitted, Call, InvalidRequest, gateway_admit, gateway_stream
from inference.models import Conversation, Message
from inference.rendering import render_markdown
from inference.selectors import conversation_history, message_text

DEFAULT_MAX_TOKENS = 2048
TITLE_LENGTH = 60


@dataclass
class ChatTurn:
    admitted: Admitted
    events: Iterator[dict[str, Any]]
    saved: dict[str, Any] = field(default_factory=dict)

    def sse(self) -> Iterator[bytes]:
        yield from sse(self.events)
        if self.saved:
            yield f"event: atrium.saved\ndata: {json.dumps(self.saved)}\n\n".encode()


def conversation_create(*, user: Any, model: str, title: str = "", system: str = "") -> Conversation:
    return Conversation.objects.create(user=user, model=model, title=title.strip()[:200], system=system)


def conversation_rename(conversation: Conversation, title: str) -> Conversation:
    conversation.title = title.strip()[:200]
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def _answer(conversation: Conversation, turn: ChatTurn, replace: Message | None) -> Any:
    def persist(message: dict[str, Any] | None, provider: str, region: str) -> None:
        if message is None:
            return
        if replace is not None:
            Message.objects.filter(pk=replace.pk).delete()
        usage = message.get("usage") or {}
        saved = Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, content=message.get("content") or [],
            model=turn.admitted.entry.model_id, provider=provider, region=region,
            input_tokens=int(usage.get("input_tokens") or 0), output_tokens=int(usage.get("output_tokens") or 0),
            stop_reason=str(message.get("stop_reason") or ""), incomplete=bool(message.get("incomplete")),
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        turn.saved.update({"message_id": str(saved.id), "incomplete": saved.incomplete,
                           "usage": {"input_tokens": saved.input_tokens, "output_tokens": saved.output_tokens},
                           "html": render_markdown(message_text(saved))})

    return persist


def chat_send(*, conversation: Conversation, user: Any, tenant: Any, request: Any, content: str | None,
              model: str | None = None, max_tokens: int | None = None, retry: bool = False) -> ChatTurn:
    """Admit and open the next answer. `retry` regenerates the last answer instead of adding a message."""
    history = conversation_history(conversation)
    replace: Message | None = None
    if retry:
        last = conversation.messages.order_by("-created_at").first()
        if last is None:
            raise InvalidRequest("This conversation has no message to retry.")
        if last.role == Message.Role.ASSISTANT:
            replace = last
            history = history[:-1]
        if not history:
            raise InvalidRequest("This conversation has no message to retry.")
    else:
        if not isinstance(content, str) or not content.strip():
            raise InvalidRequest("content: the message text is required.")
        history = [*history, {"role": "user", "content": [{"type": "text", "text": content}]}]
    body: dict[str, Any] = {"model": model or conversation.model, "stream": True,
                            "max_tokens": max_tokens or DEFAULT_MAX_TOKENS, "messages": history}
    if conversation.system:
        body["system"] = conversation.system
    admitted = gateway_admit(Call(tenant=tenant, user=user, body=body, source="chat", request=request,
                                  auth_method="session"))
    if not retry:
        with transaction.atomic():
            Message.objects.create(conversation=conversation, role=Message.Role.USER,
                                   content=[{"type": "text", "text": content}])
            updates: dict[str, Any] = {"model": admitted.entry.model_id, "updated_at": timezone.now()}
            if not conversation.title:
                updates["title"] = " ".join(str(content).split())[:TITLE_LENGTH]
            Conversation.objects.filter(pk=conversation.pk).update(**updates)
    turn = ChatTurn(admitted=admitted, events=iter(()))
    turn.events = gateway_stream(admitted, persist=_answer(conversation, turn, replace))
    return turn

"""The chat service behind the conversations API and the web chat: a conversation's next answer, streamed.

Admission (consent, policy, quota) happens before anything is saved; the user's message is saved once admitted;
the assistant's answer is saved in the same transaction as its usage and audit entry (gateway `persist`).

Versions: every answer carries `version_group` = the id of the question it answers. Regenerating adds an answer
to the same group; editing a question adds a new question (its own group) and retires the old question and
everything after it. Only `active` messages are sent to the model. Which answer of a group is active is decided
by when each *started* (its created_at is the admission time, not the save time): a stopped answer whose save
lands after the retry that replaced it stays an older, inactive version.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from config.http import sse
from inference.attachments import attachment_blocks_for_send, attachments_claim
from inference.gateway import Admitted, Call, InvalidRequest, gateway_admit, gateway_stream
from inference.models import Attachment, Conversation, Message
from inference.selectors import history_blocks

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest

    from tenants.models import Tenant

DEFAULT_MAX_TOKENS = 2048
TITLE_LENGTH = 60


@dataclass
class ChatTurn:
    admitted: Admitted
    events: Iterator[dict[str, Any]]
    saved: dict[str, Any] = field(default_factory=dict)

    def sse(self) -> Iterator[bytes]:
        """The answer's stream; right after `message_start`, `atrium.question` names the saved question (so a
        client that stops the answer still knows it: the question stays, and Retry answers it); at the end,
        `atrium.saved` names the saved answer."""
        frames = sse(self.events)
        try:
            for index, frame in enumerate(frames):
                yield frame
                if index == 0 and "question_id" in self.saved:
                    question = {"question_id": self.saved["question_id"]}
                    yield f"event: atrium.question\ndata: {json.dumps(question)}\n\n".encode()
        finally:
            frames.close()  # a client gone: the upstream call is closed now (recorded incomplete), as sse() does
        if self.saved:
            yield f"event: atrium.saved\ndata: {json.dumps(self.saved)}\n\n".encode()


def conversation_create(*, user: User, model: str, title: str = "", system: str = "") -> Conversation:
    return Conversation.objects.create(user=user, model=model, title=title.strip()[:200], system=system)


def conversation_update(*, conversation: Conversation, title: str | None = None, pinned: bool | None = None,
                        system: str | None = None) -> Conversation:
    fields = []
    if title is not None:
        conversation.title = title.strip()[:200]
        fields.append("title")
    if pinned is not None:
        conversation.pinned = pinned
        fields.append("pinned")
    if system is not None:
        conversation.system = system
        fields.append("system")
    if fields:
        # Pinning or renaming does not make a conversation "recent": keep its place in the date groups.
        Conversation.objects.filter(pk=conversation.pk).update(**{f: getattr(conversation, f) for f in fields})
    return conversation


def conversation_share(*, conversation: Conversation, shared: bool) -> Conversation:
    """Share read-only with the signed-in users of this tenant (a new link each time), or stop sharing."""
    conversation.share_id = uuid.uuid4() if shared else None
    Conversation.objects.filter(pk=conversation.pk).update(share_id=conversation.share_id)
    return conversation


def message_activate(*, message: Message) -> Message:
    """Make this version of an answer the one the conversation continues from."""
    if message.role != Message.Role.ASSISTANT or message.version_group is None:
        raise InvalidRequest("Only an answer's versions can be chosen.")
    with transaction.atomic():
        Message.objects.filter(conversation_id=message.conversation_id, version_group=message.version_group) \
            .exclude(pk=message.pk).update(active=False)
        Message.objects.filter(pk=message.pk).update(active=True)
    message.active = True
    return message


def _answer(conversation: Conversation, turn: ChatTurn, question: Message, started: datetime) -> Any:
    def persist(message: dict[str, Any] | None, provider: str, region: str) -> None:
        if message is None:
            return
        usage = message.get("usage") or {}
        group = Message.objects.filter(conversation=conversation, version_group=question.id)
        newest = not group.filter(created_at__gt=started).exists()
        if newest:
            group.update(active=False)
        saved = Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, content=message.get("content") or [],
            model=turn.admitted.entry.model_id, provider=provider, region=region,
            input_tokens=int(usage.get("input_tokens") or 0), output_tokens=int(usage.get("output_tokens") or 0),
            stop_reason=str(message.get("stop_reason") or ""), incomplete=bool(message.get("incomplete")),
            version_group=question.id, active=newest and question.active, created_at=started,
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        turn.saved.update({"message_id": str(saved.id), "incomplete": saved.incomplete,
                           "question_id": str(question.id), "versions": group.count(),
                           "usage": {"input_tokens": saved.input_tokens, "output_tokens": saved.output_tokens}})

    return persist


def _active(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.filter(active=True).order_by("created_at"))


def chat_send(*, conversation: Conversation, user: User, tenant: Tenant, request: HttpRequest | None,
              content: str | None,
              model: str | None = None, max_tokens: int | None = None, retry: bool = False,
              edit_of: str | None = None, attachment_ids: Sequence[str] = ()) -> ChatTurn:
    """Admit and open the next answer.

    `retry` answers the last question again (the earlier answers stay as versions); `edit_of` replaces that
    question of the conversation (and retires everything after it) with `content`.
    """
    messages = _active(conversation)
    retire: list[Message] = []
    question: Message | None = None
    attachments: list[Attachment] = []
    if retry:
        asked = [i for i, m in enumerate(messages) if m.role == Message.Role.USER]
        if not asked:
            raise InvalidRequest("This conversation has no question to answer again.")
        question = messages[asked[-1]]
        base = messages[:asked[-1] + 1]
    else:
        if not isinstance(content, str) or not content.strip():
            raise InvalidRequest("content: the message text is required.")
        base = messages
        if edit_of:
            index = next((i for i, m in enumerate(messages) if str(m.id) == str(edit_of)
                          and m.role == Message.Role.USER), None)
            if index is None:
                raise InvalidRequest("edit_of: no such question in this conversation.")
            base, retire = messages[:index], messages[index:]
        attachments = attachments_claim(conversation=conversation, ids=attachment_ids)
    history = history_blocks(base)
    if not retry:
        blocks = [*attachment_blocks_for_send(attachments), {"type": "text", "text": content}]
        history.append({"role": "user", "content": blocks})
    body: dict[str, Any] = {"model": model or conversation.model, "stream": True,
                            "max_tokens": max_tokens or DEFAULT_MAX_TOKENS, "messages": history}
    if conversation.system:
        body["system"] = conversation.system
    if retry:
        body["temperature"] = 1.0  # the API's default, said out loud: another sample, as Regenerate means
    admitted = gateway_admit(Call(tenant=tenant, user=user, body=body, source="chat", request=request,
                                  auth_method="session"))
    if question is None:
        with transaction.atomic():
            if retire:
                Message.objects.filter(pk__in=[m.pk for m in retire]).update(active=False)
            stored = [{"type": a.block_type, "source": {"type": "attachment", "id": str(a.id),
                                                         "media_type": a.content_type}, "title": a.name}
                      for a in attachments]
            question = Message.objects.create(conversation=conversation, role=Message.Role.USER,
                                              content=[*stored, {"type": "text", "text": content}])
            if attachments:
                Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(message=question)
            updates: dict[str, Any] = {"model": admitted.entry.model_id, "updated_at": timezone.now()}
            if not conversation.title:
                updates["title"] = " ".join(str(content).split())[:TITLE_LENGTH]
            Conversation.objects.filter(pk=conversation.pk).update(**updates)
    turn = ChatTurn(admitted=admitted, events=iter(()))
    turn.saved["question_id"] = str(question.id)
    turn.events = gateway_stream(admitted, persist=_answer(conversation, turn, question, timezone.now()))
    return turn

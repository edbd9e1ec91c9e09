"""One conversation as a file the user downloads: Markdown for people, JSON (Anthropic content blocks) for tools."""

from __future__ import annotations

from typing import Any

from inference.models import Conversation, Message
from inference.selectors import message_text


def _visible(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.filter(active=True).order_by("created_at"))


def _attachment_names(message: Message) -> list[str]:
    return [str(b.get("title") or "attachment") for b in message.content or []
            if isinstance(b, dict) and isinstance(b.get("source"), dict) and b["source"].get("type") == "attachment"]


def conversation_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.title or 'Untitled conversation'}", "",
             f"*Model: {conversation.model} · started {conversation.created_at:%Y-%m-%d %H:%M} UTC*", ""]
    if conversation.system:
        lines += ["**System prompt**", "", *[f"> {line}" for line in conversation.system.splitlines()], ""]
    for message in _visible(conversation):
        who = "You" if message.role == Message.Role.USER else f"Assistant ({message.model})"
        lines += [f"## {who}", ""]
        lines += [f"*Attached: {name}*" for name in _attachment_names(message)]
        lines += [message_text(message), ""]
        if message.incomplete:
            lines += ["*(The answer was cut off.)*", ""]
    return "\n".join(lines).rstrip() + "\n"


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id), "title": conversation.title, "model": conversation.model,
        "system": conversation.system, "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "messages": [{"id": str(m.id), "role": m.role, "content": m.content, "model": m.model,
                      "incomplete": m.incomplete, "created_at": m.created_at.isoformat(),
                      "input_tokens": m.input_tokens, "output_tokens": m.output_tokens}
                     for m in _visible(conversation)],
    }


def export_filename(conversation: Conversation, extension: str) -> str:
    """A safe ASCII file name from the title (the title itself may hold anything)."""
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in conversation.title)[:60]
    stem = "-".join(part for part in stem.split("-") if part) or "conversation"
    return f"{stem}.{extension}"

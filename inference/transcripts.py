"""Readable transcripts of conversations, for people who do not read JSON: one self-contained HTML file per
conversation in a GDPR export (beside conversations.json), and the attachments' bytes next to them.

The model's Markdown is rendered by Python-Markdown and then sanitised by nh3 (an allow-list: no script, no event
handler, no javascript: link), so a transcript opened from the archive runs nothing the model or a user wrote.
Questions are shown as the text they were (escaped, whitespace kept).
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

import markdown
import nh3
from django.template.loader import render_to_string
from django.utils import timezone

from inference.models import Attachment, Conversation, Message
from inference.selectors import message_text

_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
        "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"}


class _RawHtmlAsText(markdown.Extension):  # type: ignore[misc]  # Python-Markdown ships no types
    """Raw HTML in the text is shown as text (as the web chat does), not passed through and not dropped."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # the name Python-Markdown calls
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


def markdown_html(text: str) -> str:
    """The model's Markdown as sanitised HTML; nh3 would also drop anything unsafe the renderer let through."""
    rendered = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists", _RawHtmlAsText()],
                                 output_format="html")
    return nh3.clean(rendered, tags=TAGS, attributes={"a": {"href", "title"}, "code": {"class"}, "th": {"align"},
                                                     "td": {"align"}},
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")


def attachment_archive_name(attachment: Attachment) -> str:
    """Its path inside the export's attachments/ folder: unique by id, and already safe."""
    stem, dot, extension = attachment.name.rpartition(".")
    if not dot:
        stem, extension = attachment.name, ""
    safe_stem = _SAFE.sub("-", stem).strip("-")[:60] or "file"
    safe_ext = _SAFE.sub("", extension)[:10]
    return f"{attachment.conversation_id}/{attachment.id}-{safe_stem}{'.' + safe_ext if safe_ext else ''}"


def transcript_name(conversation: Conversation) -> str:
    """`<started, UTC>-<title>-<id>.html`: sorted by date, readable, unique by the id."""
    stem = _SAFE.sub("-", conversation.title or "conversation").strip("-")[:50] or "conversation"
    started = conversation.created_at.astimezone(UTC)
    return f"{started:%Y-%m-%d}-{stem}-{str(conversation.id)[:8]}.html"


def transcript_html(conversation: Conversation, attachments: dict[str, str]) -> str:
    """The conversation's active thread as one HTML document. `attachments`: attachment id -> archive path
    relative to the transcript (a link to the file inside the same archive)."""
    messages: list[dict[str, Any]] = []
    for message in conversation.messages.filter(active=True).order_by("created_at"):
        files = [{"name": str(b.get("title") or "attachment"), "href": attachments.get(str(b["source"].get("id")))}
                 for b in message.content or []
                 if isinstance(b, dict) and isinstance(b.get("source"), dict)
                 and b["source"].get("type") == "attachment"]
        text = message_text(message)
        messages.append({"role": message.role, "model": message.model, "created_at": message.created_at,
                         "incomplete": message.incomplete, "files": files,
                         "text": text, "html": markdown_html(text) if message.role == Message.Role.ASSISTANT else ""})
    return render_to_string("inference/transcript.html", {"conversation": conversation, "messages": messages,
                                                           "exported_at": timezone.now()})

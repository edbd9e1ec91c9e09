"""The web chat at /chat/: server-rendered pages; static/chat.js streams answers and renders Markdown.

Messages reach the page as their raw text (escaped by the template, shown as plain text without JavaScript);
the browser renders every message, live or reloaded, through the same pipeline (marked, then DOMPurify).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import never_cache

from audit.services import consent_required
from config.users import request_user
from inference.api import usage_me
from inference.api_chat import presets_of
from inference.api_v1 import models_for
from inference.models import Attachment, Conversation, Message
from inference.selectors import conversation_get, conversation_groups, conversation_list, message_text


def _attachments(message: Message) -> list[dict[str, str]]:
    return [{"id": str(b["source"].get("id")), "name": str(b.get("title") or "attachment"),
             "content_type": str(b["source"].get("media_type") or "")}
            for b in message.content or []
            if isinstance(b, dict) and isinstance(b.get("source"), dict) and b["source"].get("type") == "attachment"]


def thread(conversation: Conversation) -> list[dict[str, Any]]:
    """The active messages, each answer with all its versions (oldest first) for the version switcher."""
    every = list(conversation.messages.order_by("created_at"))
    versions: dict[Any, list[Message]] = {}
    for m in every:
        if m.role == Message.Role.ASSISTANT and m.version_group is not None:
            versions.setdefault(m.version_group, []).append(m)
    shown = []
    for m in every:
        if not m.active:
            continue
        group = versions.get(m.version_group, [m]) if m.role == Message.Role.ASSISTANT else [m]
        shown.append({
            "id": str(m.id), "role": m.role, "text": message_text(m), "incomplete": m.incomplete, "model": m.model,
            "attachments": _attachments(m),
            "versions": [{"id": str(v.id), "text": message_text(v), "incomplete": v.incomplete} for v in group],
            "version": next((i for i, v in enumerate(group, 1) if v.id == m.id), 1),
        })
    return shown


def _sidebar(request: HttpRequest, active: Any = None) -> dict[str, Any]:
    query = request.GET.get("q", "").strip()[:200]
    return {"groups": conversation_groups(conversation_list(user=request_user(request), query=query)[:200]),
            "query": query, "active_id": str(active) if active else ""}


@never_cache
@login_required
def chat(request: HttpRequest, conversation_id: str | None = None) -> HttpResponse:
    tenant = connection.tenant  # type: ignore[attr-defined]
    if consent_required(request_user(request), tenant) is not None:
        return redirect(f"{reverse('consent')}?next={request.path}")
    conversation = None
    if conversation_id is not None:
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return render(request, "chat/not_found.html", status=404)
    models = models_for(request_user(request), tenant)
    return render(request, "chat/chat.html", {
        **_sidebar(request, conversation.id if conversation else None),
        "conversation": conversation,
        "chat_messages": thread(conversation) if conversation else [],
        "models": models,
        "selected_model": conversation.model if conversation else (models[0].model_id if models else ""),
        "usage": usage_me(request_user(request), tenant),
        "can_write": request.user.has_perm("access.write"),
        "can_attach": request.user.has_perm("access.use_vision"),
        "presets": presets_of(request.user),
    })


@never_cache
@login_required
def chat_list(request: HttpRequest) -> HttpResponse:
    """The sidebar's list alone (search as you type, refresh after the first message, rename or delete)."""
    return render(request, "chat/_list.html", _sidebar(request, request.GET.get("active")))


@never_cache
@login_required
def chat_shared(request: HttpRequest, share_id: str) -> HttpResponse:
    """A conversation shared read-only: any signed-in user of this tenant (its schema) with the link."""
    try:
        conversation = Conversation.objects.select_related("user").filter(share_id=share_id).first()
    except (ValueError, TypeError):
        conversation = None
    if conversation is None:
        return render(request, "chat/not_found.html", {"shared": True}, status=404)
    return render(request, "chat/shared.html", {"conversation": conversation, "chat_messages": thread(conversation),
                                                "owner": conversation.user.get_username(),
                                                "mine": conversation.user_id == request.user.pk})


@never_cache
@login_required
def attachment_file(request: HttpRequest, attachment_id: str) -> HttpResponseBase:
    """An attachment, for its owner or a viewer of the shared conversation; never rendered as a page."""
    try:
        attachment = Attachment.objects.select_related("conversation").filter(id=attachment_id).first()
    except (ValueError, TypeError):
        attachment = None
    if attachment is None or not (attachment.conversation.user_id == request.user.pk
                                  or attachment.conversation.share_id is not None):
        return render(request, "chat/not_found.html", status=404)
    image = attachment.content_type.startswith("image/")
    response = FileResponse(attachment.file.open("rb"), content_type=attachment.content_type,
                            as_attachment=not image, filename=attachment.name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def favicon(request: HttpRequest) -> HttpResponse:
    return redirect(static("favicon.svg"), permanent=True)

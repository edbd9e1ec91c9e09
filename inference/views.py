"""The web chat at /chat/: server-rendered pages; a small script streams answers from the conversations API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import linebreaksbr
from django.urls import reverse
from django.views.decorators.cache import never_cache

from audit.services import consent_required
from inference.api import usage_me
from inference.api_v1 import models_for
from inference.models import Message
from inference.rendering import render_markdown
from inference.selectors import conversation_get, conversation_list, message_text


def _html(message: Message) -> str:
    """Answers as sanitised Markdown; the user's own words as plain text, exactly as typed."""
    text = message_text(message)
    return render_markdown(text) if message.role == Message.Role.ASSISTANT else str(linebreaksbr(text))


@never_cache
@login_required
def chat(request: HttpRequest, conversation_id: str | None = None) -> HttpResponse:
    tenant = connection.tenant  # type: ignore[attr-defined]
    if consent_required(request.user, tenant) is not None:
        return redirect(f"{reverse('consent')}?next={request.path}")
    conversation = None
    messages = []
    if conversation_id is not None:
        conversation = conversation_get(user=request.user, conversation_id=conversation_id)
        if conversation is None:
            raise Http404("No such conversation.")
        messages = [{"id": str(m.id), "role": m.role, "html": _html(m),
                     "incomplete": m.incomplete, "model": m.model}
                    for m in conversation.messages.order_by("created_at")]
    models = models_for(request.user, tenant)
    can_write = request.user.has_perm("access.write")
    return render(request, "chat/chat.html", {
        "conversations": conversation_list(user=request.user)[:100],
        "conversation": conversation,
        "chat_messages": messages,
        "models": models,
        "selected_model": conversation.model if conversation else (models[0].model_id if models else ""),
        "usage": usage_me(request.user, tenant),
        "can_write": can_write,
    })

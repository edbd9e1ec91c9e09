"""Reads on conversations, messages and usage (the chat, the conversations API, exports and admin pages)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Func, Q, QuerySet, Sum, TextField

from inference.models import Conversation, Message, UsageDaily

if TYPE_CHECKING:
    from django.contrib.auth.models import User



class _Texts(Func):
    """The text blocks' texts of a message's content, as one string (PostgreSQL JSON path)."""

    template = "jsonb_path_query_array(%(expressions)s, '$[*].text')::text"
    output_field = TextField()


def conversation_list(*, user: User, query: str = "") -> QuerySet[Conversation]:
    """The user's conversations, pinned first then most recent; `query` matches titles and message text."""
    conversations = Conversation.objects.filter(user=user)
    query = query.strip()
    if query:
        # Message content is a JSON list of blocks: match the text of its text blocks only (not the JSON keys).
        matching = Message.objects.filter(conversation__user=user, active=True).annotate(text=_Texts("content")) \
            .filter(text__icontains=query).values("conversation_id")
        conversations = conversations.filter(Q(title__icontains=query) | Q(id__in=matching))
    return conversations.order_by("-pinned", "-updated_at")


DATE_GROUPS = ("Pinned", "Today", "Yesterday", "Previous 7 days", "Older")


def conversation_groups(conversations: Any, *, now: datetime | None = None) -> list[tuple[str, list[Conversation]]]:
    """Pinned, today, yesterday, previous 7 days, older (UTC days), in that order, empty groups left out."""
    today = (now or datetime.now(UTC)).date()
    groups: dict[str, list[Conversation]] = {name: [] for name in DATE_GROUPS}
    for conversation in conversations:
        day = conversation.updated_at.astimezone(UTC).date()
        if conversation.pinned:
            name = "Pinned"
        elif day >= today:
            name = "Today"
        elif day == today - timedelta(days=1):
            name = "Yesterday"
        elif day >= today - timedelta(days=7):
            name = "Previous 7 days"
        else:
            name = "Older"
        groups[name].append(conversation)
    return [(name, items) for name, items in groups.items() if items]


def conversation_get(*, user: User, conversation_id: Any) -> Conversation | None:
    """The user's own conversation, or None (another user's id is indistinguishable from a missing one)."""
    try:
        return Conversation.objects.filter(user=user, id=conversation_id).first()
    except (ValueError, TypeError, ValidationError):  # not a UUID
        return None


def conversation_history(conversation: Conversation) -> list[dict[str, Any]]:
    """The active messages in the Anthropic shape, oldest first, for the next model call."""
    return history_blocks(list(conversation.messages.filter(active=True).order_by("created_at")))


def history_blocks(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in the Anthropic shape; attachment references become the file's bytes (base64)."""
    from inference.attachments import attachment_source

    history = []
    for message in messages:
        if not message.content:
            continue  # an answer stopped before its first word
        blocks = []
        for block in message.content:
            source = block.get("source") if isinstance(block, dict) else None
            if isinstance(source, dict) and source.get("type") == "attachment":
                resolved = attachment_source(message, str(source.get("id")))
                if resolved is None:
                    continue  # deleted since (conversation retention keeps messages and files together)
                block = {"type": block["type"], "source": resolved}
            blocks.append(block)
        history.append({"role": message.role, "content": blocks})
    return history


def message_text(message: Message) -> str:
    return "".join(b.get("text", "") for b in message.content or [] if isinstance(b, dict) and b.get("type") == "text")


def usage_today(*, user: User) -> dict[str, int]:
    today = datetime.now(UTC).date()
    totals = UsageDaily.objects.filter(user=user, day=today).aggregate(
        requests=Sum("requests"), input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"))
    return {k: int(v or 0) for k, v in totals.items()}


def usage_series(*, days: int = 30, user_id: int | None = None) -> dict[str, Any]:
    """Tokens and requests per day, and totals per model, user and provider, for the admin usage page."""
    since: date = datetime.now(UTC).date() - timedelta(days=days - 1)
    rows = UsageDaily.objects.filter(day__gte=since)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    per_day = {r["day"].isoformat(): r for r in rows.values("day").annotate(
        requests=Sum("requests"), input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"),
        errors=Sum("errors")).order_by("day")}
    series = []
    for offset in range(days):
        day = (since + timedelta(days=offset)).isoformat()
        row: dict[str, Any] = dict(per_day.get(day) or {})
        series.append({"day": day, "requests": int(row.get("requests") or 0),
                       "input_tokens": int(row.get("input_tokens") or 0),
                       "output_tokens": int(row.get("output_tokens") or 0), "errors": int(row.get("errors") or 0)})

    def grouped(field: str) -> list[dict[str, Any]]:
        return [{"key": str(r[field]) if r[field] is not None else "(deleted users)",
                 "requests": int(r["requests"] or 0), "tokens": int((r["i"] or 0) + (r["o"] or 0))}
                for r in rows.values(field).annotate(requests=Sum("requests"), i=Sum("input_tokens"),
                                                     o=Sum("output_tokens")).order_by("-requests")]

    per_user = grouped("user__username")
    return {"since": since.isoformat(), "days": series, "per_model": grouped("model"),
            "per_provider": grouped("provider"), "per_user": per_user,
            "conversations": Conversation.objects.filter(created_at__date__gte=since).aggregate(n=Count("id"))["n"]}

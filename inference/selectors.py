"""Reads on conversations, messages and usage (the chat, the conversations API, exports and admin pages)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet, Sum

from inference.models import Conversation, Message, UsageDaily


def conversation_list(*, user: Any) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=user).order_by("-updated_at")


def conversation_get(*, user: Any, conversation_id: Any) -> Conversation | None:
    """The user's own conversation, or None (another user's id is indistinguishable from a missing one)."""
    try:
        return Conversation.objects.filter(user=user, id=conversation_id).first()
    except (ValueError, TypeError, ValidationError):  # not a UUID
        return None


def conversation_history(conversation: Conversation) -> list[dict[str, Any]]:
    """Messages in the Anthropic shape, oldest first, for the next model call."""
    return [{"role": m.role, "content": m.content}
            for m in conversation.messages.order_by("created_at") if m.content]


def message_text(message: Message) -> str:
    return "".join(b.get("text", "") for b in message.content or [] if isinstance(b, dict) and b.get("type") == "text")


def usage_today(*, user: Any) -> dict[str, int]:
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

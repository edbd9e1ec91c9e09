"""Conversations, messages, chat preferences and durable usage counters, in each tenant's schema."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=120, help_text="Tier or model id last used in this conversation.")
    system = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="conversation_user_recent")]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    # Anthropic content blocks ([{"type": "text", "text": …}, …]) exactly as sent or received.
    content = models.JSONField()
    model = models.CharField(max_length=120, blank=True, default="")
    provider = models.CharField(max_length=40, blank=True, default="")
    region = models.CharField(max_length=40, blank=True, default="")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    stop_reason = models.CharField(max_length=40, blank=True, default="")
    incomplete = models.BooleanField(default=False, help_text="The stream ended early with an error.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="message_conversation_order")]

    def __str__(self) -> str:
        return f"{self.role} message {self.id}"


class ChatPreference(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_preference")
    default_model = models.CharField(max_length=120, blank=True, default="")
    settings = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"preferences of user {self.user_id}"


class UsageDaily(models.Model):
    """Requests and tokens per user, model, provider and UTC day; upserted after every model call."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="usage")
    day = models.DateField()
    model = models.CharField(max_length=120)
    provider = models.CharField(max_length=40)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day", "model", "provider"], name="usage_daily_unique",
                                    nulls_distinct=False),
        ]
        indexes = [models.Index(fields=["day"], name="usage_daily_day")]
        verbose_name = "usage"
        verbose_name_plural = "usage"

    def __str__(self) -> str:
        return f"usage {self.day} {self.model} {self.provider}"


class UsageRecord(models.Model):
    """One model call's usage, keyed by its request id: the idempotency ledger behind UsageDaily.

    The recorder inserts a call's row and adds it to UsageDaily in one statement, only when the row is new, so a
    retried or replayed record can never count twice. The rows of the current day also rebuild the Redis token
    counters after Redis lost them (access.quotas.quota_rebuild); older rows are pruned by retention.
    """

    request_id = models.CharField(max_length=100, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    day = models.DateField()
    model = models.CharField(max_length=120)
    provider = models.CharField(max_length=40)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    # Tokens charged against the day's quota counters (0 for a call released unused).
    charged_tokens = models.PositiveBigIntegerField(default=0)
    error = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["day"], name="usage_record_day")]

    def __str__(self) -> str:
        return f"usage of {self.request_id}"

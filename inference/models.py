"""Conversations, messages, chat preferences and durable usage counters, in each tenant's schema."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=120, help_text="Tier or model id last used in this conversation.")
    system = models.TextField(blank=True, default="")
    pinned = models.BooleanField(default=False)
    # Set while the conversation is shared read-only with the signed-in users of this tenant (/chat/shared/<id>/).
    share_id = models.UUIDField(null=True, blank=True, unique=True)
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
    # Regenerated answers and edited questions stay as versions: only active messages form the history sent
    # to the model. The versions of one answer share `version_group` (the first version's id).
    active = models.BooleanField(default=True)
    version_group = models.UUIDField(null=True, blank=True)
    # When the message was asked for: an answer's is its admission time, not its save time (see inference.chat).
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="message_conversation_order")]

    def __str__(self) -> str:
        return f"{self.role} message {self.id}"


def attachment_path(instance: Attachment, filename: str) -> str:
    """MEDIA_ROOT/<tenant schema>/attachments/<conversation>/<attachment id>: per tenant, never the user's name."""
    from django.db import connection

    return f"{connection.schema_name}/attachments/{instance.conversation_id}/{instance.id}"  # type: ignore[attr-defined]


class Attachment(models.Model):
    """An image or PDF uploaded into a conversation (only with access.use_vision); deleted with it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=300)
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"attachment {self.id}"

    @property
    def block_type(self) -> str:
        """The Anthropic content block that carries it."""
        return "document" if self.content_type == "application/pdf" else "image"


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
    cache_read_tokens = models.PositiveBigIntegerField(default=0, db_default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0, db_default=0)
    # The calls' costs as recorded (micro-USD, each priced when it was recorded: docs/costs.md).
    cost_micros = models.PositiveBigIntegerField(default=0, db_default=0)
    # The API key's public prefix ("" for the web chat and bearer tokens), so cost can be read per key.
    api_key = models.CharField(max_length=16, blank=True, default="", db_default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day", "model", "provider", "api_key"],
                                    name="usage_daily_unique_key", nulls_distinct=False),
        ]
        indexes = [models.Index(fields=["day"], name="usage_daily_day")]
        verbose_name = "usage and cost"  # the tenant admin's page (inference/admin.py)
        verbose_name_plural = "usage and cost"

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
    cache_read_tokens = models.PositiveBigIntegerField(default=0, db_default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0, db_default=0)
    # The call's cost in micro-USD, priced at record time with the price then in effect; never recomputed.
    cost_micros = models.PositiveBigIntegerField(default=0, db_default=0)
    api_key = models.CharField(max_length=16, blank=True, default="", db_default="")

    class Meta:
        indexes = [models.Index(fields=["day"], name="usage_record_day")]

    def __str__(self) -> str:
        return f"usage of {self.request_id}"


class MessageBatch(models.Model):
    """A Message Batches API batch (inference.batches): its requests run by Celery through the gateway."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        CANCELING = "canceling"
        ENDED = "ended"

    id = models.CharField(primary_key=True, max_length=48, editable=False)  # msgbatch_<32 hex>
    # Deleting the user deletes their batches with their prompts and results (GDPR erasure).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IN_PROGRESS)
    total = models.PositiveIntegerField(default=0)
    betas = models.JSONField(default=list, blank=True)
    auth_method = models.CharField(max_length=20, default="api_key")
    auth_metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    cancel_initiated_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)  # the worker running it holds the lease until then
    # When its requests and results were deleted (ATRIUM_BATCH_RESULTS_RETENTION_DAYS after creation): the batch
    # and its counts stay, its results answer 404 (inference.batches.batch_results_expire).
    archived_at = models.DateTimeField(null=True, blank=True)
    succeeded_count = models.PositiveIntegerField(default=0)
    errored_count = models.PositiveIntegerField(default=0)
    canceled_count = models.PositiveIntegerField(default=0)
    expired_count = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="message_batch_user_recent")]

    def __str__(self) -> str:
        return self.id


class MessageBatchRequest(models.Model):
    """One request of a batch, and once run its result (the Message, or the error) as the results file has it."""

    batch = models.ForeignKey(MessageBatch, on_delete=models.CASCADE, related_name="requests")
    position = models.PositiveIntegerField()
    custom_id = models.CharField(max_length=64)
    params = models.JSONField()
    # "" until run; then succeeded, errored, canceled or expired.
    result_type = models.CharField(max_length=20, blank=True, default="")
    result = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "custom_id"], name="message_batch_custom_id")]
        indexes = [models.Index(fields=["batch", "result_type", "position"], name="message_batch_pending")]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.custom_id}"

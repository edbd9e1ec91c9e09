"""Tenant and Domain (django-tenants) with the tenant's policy on the Tenant row.

Policy lives on the public-schema row so the gateway reads it with the tenant itself,
which TenantMainMiddleware has already loaded: no second query per request.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin

from tenants.fields import EncryptedJSONField, EncryptedTextField


def _new_audit_key() -> str:
    return secrets.token_urlsafe(32)


class Tenant(TenantMixin):
    class AccountAction(models.TextChoices):
        DEACTIVATE = "deactivate", "Deactivate and anonymise the account"
        REMOVE = "remove", "Remove the account"

    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=True, help_text="An inactive tenant's users cannot sign in or call models.")

    # --- policy ---
    allowed_models = ArrayField(
        models.CharField(max_length=120),
        default=list,
        blank=True,
        help_text="Model tiers (opus, sonnet, haiku) or model ids this tenant may use. Empty allows every model.",
    )
    max_tokens_per_request = models.PositiveIntegerField(
        default=8192,
        validators=[MinValueValidator(1)],
        help_text="Every request's max_tokens is clamped to this.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, default=600, help_text="Whole-tenant request rate. Empty means no limit."
    )
    tokens_per_day = models.PositiveBigIntegerField(
        null=True, blank=True, default=5_000_000, help_text="Whole-tenant tokens per UTC day. Empty means no limit."
    )
    user_requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per-user request rate. Empty means only the tenant limit applies."
    )
    user_tokens_per_day = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Per-user tokens per UTC day. Empty means only the tenant limit applies."
    )
    retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Conversations older than this are deleted."
    )
    processing_notice = models.TextField(
        blank=True,
        default="",
        help_text="Processing notice shown to users before first use and appended to every system prompt.",
    )
    data_region = models.CharField(max_length=40, blank=True, default="", help_text="e.g. eu, us. Informational.")
    provider_order = models.JSONField(
        default=list,
        blank=True,
        help_text='Failover order, e.g. ["anthropic", "bedrock:eu-west-1", "vertex:europe-west1"]. '
        "Empty uses the platform default.",
    )
    first_byte_timeout_s = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)],
        help_text="Seconds a provider may take to start answering before the next one is tried. "
        "Empty uses the platform's setting (ATRIUM_FIRST_BYTE_TIMEOUT_S / ATRIUM_FIRST_BYTE_TIMEOUTS).",
    )
    hedge_delay_ms = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="After this many milliseconds without an answer, also ask the next provider and keep the first "
        "answer. 0 turns hedging off; empty uses the platform's ATRIUM_HEDGE_DELAY_MS.",
    )
    anthropic_beta_allowed = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="anthropic-beta feature names this tenant's callers may send (comma-separated, e.g. "
        "prompt-caching-2024-07-31). A name not listed is refused with 400. Empty allows none.",
    )
    gdpr_account_action = models.CharField(
        max_length=20, choices=AccountAction.choices, default=AccountAction.DEACTIVATE
    )

    # --- secrets (encrypted at rest, never shown back) ---
    credentials = EncryptedJSONField(blank=True, default="", editable=False)
    audit_key = EncryptedTextField(default=_new_audit_key, editable=False)

    auto_create_schema = True
    # Dropping a schema destroys a tenant's data; only tenants.services.tenant_delete turns this on.
    auto_drop_schema = False

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_tokens_per_request__gte=1), name="tenant_max_tokens_positive"
            ),
            models.CheckConstraint(condition=models.Q(retention_days__gte=1), name="tenant_retention_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.schema_name})"

    @property
    def slug(self) -> str:
        return self.schema_name.replace("_", "-")

    def credential_section(self, provider: str) -> dict[str, Any]:
        section = (self.credentials or {}).get(provider) or {}
        return dict(section)


class Domain(DomainMixin):
    def __str__(self) -> str:
        return self.domain

"""The model catalog (tiers to each provider's model id) and provider health history, in the public schema."""

from __future__ import annotations

from django.db import models

from tenants.models import Tenant

TIER_CHOICES = [("opus", "Opus"), ("sonnet", "Sonnet"), ("haiku", "Haiku")]


class BedrockProfile(models.TextChoices):
    """How a Bedrock model id is prefixed: cross-region inference profiles, or the plain regional id."""

    GLOBAL = "global", "global. (global cross-region inference profile)"
    GEO = "geo", "us. / eu. / apac. by region (geographic inference profile)"
    NONE = "none", "no prefix (on-demand regional model id)"


class CatalogModel(models.Model):
    """One Claude model and the id each provider knows it by. Edited in the public admin; no code change needed."""

    model_id = models.CharField(
        max_length=120, unique=True, help_text="Canonical id clients send and see, e.g. claude-sonnet-5-5."
    )
    display_name = models.CharField(max_length=120)
    tier = models.CharField(max_length=10, choices=TIER_CHOICES, blank=True, default="",
                            help_text="Permission tier (use_opus / use_sonnet / use_haiku). Blank: admins only.")
    is_tier_default = models.BooleanField(default=False, help_text="The model a request for the bare tier gets.")
    aliases = models.JSONField(default=list, blank=True, help_text='Other accepted names.')
    enabled = models.BooleanField(default=True)
    anthropic_id = models.CharField(max_length=160, blank=True, default="", help_text="Blank: not served.")
    bedrock_id = models.CharField(max_length=160, blank=True, default="",
                                  help_text="Without prefix. Blank: not served.")
    bedrock_profile = models.CharField(max_length=10, choices=BedrockProfile.choices, default=BedrockProfile.GLOBAL)
    vertex_id = models.CharField(max_length=160, blank=True, default="", help_text="Blank: not on Vertex AI.")
    # Integer cents per million tokens: list prices for usage estimates; the health check uses the cheapest model.
    input_price_cents_per_mtok = models.PositiveIntegerField(default=0)
    output_price_cents_per_mtok = models.PositiveIntegerField(default=0)
    released_at = models.DateTimeField(help_text="Shown as created_at in /v1/models.")
    sort_order = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["sort_order", "model_id"]
        constraints = [
            models.UniqueConstraint(fields=["tier"], condition=models.Q(is_tier_default=True),
                                    name="catalog_one_default_per_tier"),
        ]

    def __str__(self) -> str:
        return self.model_id


class ProviderHealthCheck(models.Model):
    """One health probe of a provider target (a one-token call with the cheapest model)."""

    class Status(models.TextChoices):
        UP = "up"
        DOWN = "down"
        MISCONFIGURED = "misconfigured"

    target = models.CharField(max_length=80, db_index=True, help_text="anthropic, bedrock:<region>, vertex:<region>")
    credentials_source = models.CharField(max_length=80, default="environment",
                                          help_text="environment, or the tenant whose credentials were used.")
    status = models.CharField(max_length=16, choices=Status.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    model_id = models.CharField(max_length=160, blank=True, default="")
    detail = models.CharField(max_length=300, blank=True, default="")
    checked_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [models.Index(fields=["target", "-checked_at"], name="health_target_recent")]

    def __str__(self) -> str:
        return f"{self.target} {self.status} at {self.checked_at:%Y-%m-%d %H:%M:%S}"


class TenantUsage(Tenant):
    """The public admin's usage-per-tenant page (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "usage per tenant"
        verbose_name_plural = "usage per tenant"


class ProviderChoice(models.TextChoices):
    ANY = "", "every provider"
    ANTHROPIC = "anthropic", "Anthropic"
    BEDROCK = "bedrock", "Amazon Bedrock"
    VERTEX = "vertex", "Google Vertex AI"


class ModelPrice(models.Model):
    """What a model costs at a provider from `effective_from` on (USD per million tokens).

    A price is never edited into the past: a change is a new row with a later effective date, and every call's cost
    is computed when it is recorded and stored with its usage, so history never moves (docs/costs.md).
    """

    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="prices")
    provider = models.CharField(max_length=20, choices=ProviderChoice.choices, blank=True, default="",
                                help_text="Blank: the price at every provider without a price of its own.")
    effective_from = models.DateTimeField(help_text="Calls recorded at or after this moment (UTC) use this price.")
    input_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cache_read_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    cache_write_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    batch_discount_percent = models.DecimalField(max_digits=5, decimal_places=2, default=0,
                                                 help_text="Off every token price for Message Batches calls.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model__sort_order", "model__model_id", "provider", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "provider", "effective_from"], name="model_price_unique"),
            models.CheckConstraint(condition=models.Q(batch_discount_percent__gte=0, batch_discount_percent__lte=100),
                                   name="model_price_discount_range"),
            models.CheckConstraint(condition=models.Q(input_usd_per_mtok__gte=0, output_usd_per_mtok__gte=0,
                                                      cache_read_usd_per_mtok__gte=0,
                                                      cache_write_usd_per_mtok__gte=0),
                                   name="model_price_not_negative"),
        ]
        verbose_name = "model price"

    def __str__(self) -> str:
        return f"{self.model_id} {self.provider or 'any provider'} from {self.effective_from:%Y-%m-%d %H:%M}"

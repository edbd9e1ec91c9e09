"""Public admin: tenants, their domains, policy and provider credentials (write-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django_tenants.admin import TenantAdminMixin

from config.admin_mixins import PublicSiteMixin
from config.admin_sites import platform_site
from tenants import admin_beat  # noqa: F401 - the beat schedule's admins, on the platform site
from tenants.models import Domain, Tenant
from tenants.signals import tenant_policy_changed
from tenants.validators import validate_allowed_models, validate_provider_order

# Credential inputs: (form field, provider, key, is_secret). Secrets are never rendered back.
CREDENTIAL_FIELDS: list[tuple[str, str, str, bool]] = [
    ("anthropic_api_key", "anthropic", "api_key", True),
    ("bedrock_mode", "bedrock", "mode", False),
    ("bedrock_access_key", "bedrock", "access_key", False),
    ("bedrock_secret_key", "bedrock", "secret_key", True),
    ("bedrock_session_token", "bedrock", "session_token", True),
    ("bedrock_role_arn", "bedrock", "role_arn", False),
    ("vertex_project_id", "vertex", "project_id", False),
    ("vertex_mode", "vertex", "mode", False),
    ("vertex_service_account_json", "vertex", "service_account_json", True),
]


class TenantForm(forms.ModelForm):
    allowed_models = forms.CharField(
        required=False,
        help_text="Comma-separated tiers or model ids (opus, sonnet, haiku, claude-…). Empty allows all.",
    )
    anthropic_api_key = forms.CharField(required=False, widget=forms.PasswordInput, help_text="Leave blank to keep.")
    bedrock_mode = forms.ChoiceField(
        required=False,
        choices=[
            ("", "— unchanged —"),
            ("default", "Default chain (environment, instance or task role)"),
            ("keys", "Access key and secret"),
            ("session", "Access key, secret and session token"),
            ("assume_role", "Assume an IAM role"),
        ],
    )
    bedrock_access_key = forms.CharField(required=False)
    bedrock_secret_key = forms.CharField(required=False, widget=forms.PasswordInput, help_text="Leave blank to keep.")
    bedrock_session_token = forms.CharField(
        required=False, widget=forms.PasswordInput, help_text="Leave blank to keep."
    )
    bedrock_role_arn = forms.CharField(
        required=False,
        help_text="The role's trust policy must require this tenant's ExternalId (shown below) as sts:ExternalId; "
                  "Atrium sends it on every AssumeRole, so the role is unusable from any other tenant.",
    )
    vertex_project_id = forms.CharField(required=False)
    vertex_mode = forms.ChoiceField(
        required=False,
        choices=[
            ("", "— unchanged —"),
            ("adc", "Application default credentials"),
            ("service_account", "Service account JSON"),
        ],
    )
    vertex_service_account_json = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="Leave blank to keep."
    )
    clear_credentials = forms.MultipleChoiceField(
        required=False,
        choices=[("anthropic", "Anthropic"), ("bedrock", "Bedrock"), ("vertex", "Vertex")],
        widget=forms.CheckboxSelectMultiple,
        help_text="Remove every stored credential of these providers.",
    )

    class Meta:
        model = Tenant
        fields = [
            "name", "schema_name", "is_active", "allowed_models", "max_tokens_per_request", "requests_per_minute",
            "tokens_per_day", "user_requests_per_minute", "user_tokens_per_day", "retention_days",
            "data_region", "provider_order", "gdpr_account_action", "first_byte_timeout_s",
            "hedge_delay_ms", "anthropic_beta_allowed",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_models"] = ", ".join(self.instance.allowed_models or [])
            self.fields["schema_name"].disabled = True
            stored = self.instance.credentials or {}
            for field_name, provider, key, is_secret in CREDENTIAL_FIELDS:
                value = (stored.get(provider) or {}).get(key)
                if is_secret:
                    self.fields[field_name].help_text = "Stored. Leave blank to keep." if value else "Not set."
                elif value:
                    self.initial[field_name] = value

    def clean_allowed_models(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_models") or ""
        names = [n.strip() for n in raw.split(",") if n.strip()]
        validate_allowed_models(names)
        return names

    def clean_provider_order(self) -> list[str]:
        order = self.cleaned_data.get("provider_order") or []
        validate_provider_order(order)
        return list(order)

    def credential_changes(self) -> dict[str, dict[str, str]]:
        changes: dict[str, dict[str, str]] = {}
        for field_name, provider, key, _ in CREDENTIAL_FIELDS:
            value = (self.cleaned_data.get(field_name) or "").strip()
            if value:
                changes.setdefault(provider, {})[key] = value
        return changes


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant, site=platform_site)
class TenantAdmin(TenantAdminMixin, PublicSiteMixin):
    form = TenantForm
    inlines = [DomainInline]
    list_display = ["name", "schema_name", "is_active", "primary_domain", "requests_per_minute", "tokens_per_day"]
    list_filter = ["is_active"]
    search_fields = ["name", "schema_name", "domains__domain"]
    # The tenant's own tightenings and notice are its own (tenant site); the platform sees them, never edits them.
    readonly_fields = ["created_at", "credential_status", "bedrock_external_id", "processing_notice",
                       "own_allowed_models", "own_max_tokens_per_request", "own_user_requests_per_minute",
                       "own_user_tokens_per_day"]
    fieldsets = [
        (None, {"fields": ["name", "schema_name", "is_active", "created_at"]}),
        (
            "Policy",
            {
                "fields": [
                    "allowed_models", "max_tokens_per_request", "requests_per_minute", "tokens_per_day",
                    "user_requests_per_minute", "user_tokens_per_day", "provider_order", "data_region",
                ]
            },
        ),
        ("Providers", {"fields": ["first_byte_timeout_s", "hedge_delay_ms", "anthropic_beta_allowed"]}),
        ("Privacy", {"fields": ["retention_days", "gdpr_account_action"]}),
        (
            "Set by the tenant (stricter values win)",
            {"fields": ["processing_notice", "own_allowed_models", "own_max_tokens_per_request",
                        "own_user_requests_per_minute", "own_user_tokens_per_day"]},
        ),
        (
            "Provider credentials (encrypted; never shown back)",
            {
                "fields": [
                    "credential_status", "anthropic_api_key", "bedrock_mode", "bedrock_access_key",
                    "bedrock_secret_key", "bedrock_session_token", "bedrock_role_arn", "bedrock_external_id",
                    "vertex_project_id",
                    "vertex_mode", "vertex_service_account_json", "clear_credentials",
                ]
            },
        ),
    ]

    @admin.display(description="Primary domain")
    def primary_domain(self, obj: Tenant) -> str:
        domain = obj.domains.filter(is_primary=True).first()
        return domain.domain if domain else "—"

    @admin.display(description="Configured providers")
    def credential_status(self, obj: Tenant) -> str:
        stored = obj.credentials or {}
        configured = [p for p in ("anthropic", "bedrock", "vertex") if stored.get(p)]
        return ", ".join(configured) or "none (environment or platform defaults apply)"

    def save_model(self, request: HttpRequest, obj: Tenant, form: forms.ModelForm, change: bool) -> None:
        assert isinstance(form, TenantForm)
        credentials = dict(obj.credentials or {})
        for provider in form.cleaned_data.get("clear_credentials") or []:
            credentials.pop(provider, None)
        for provider, values in form.credential_changes().items():
            credentials[provider] = {**(credentials.get(provider) or {}), **values}
        credentials_changed = sorted(set(form.cleaned_data.get("clear_credentials") or [])
                                     | set(form.credential_changes()))
        obj.credentials = credentials
        super().save_model(request, obj, form, change)
        if change and (form.changed_data or credentials_changed):
            policy_fields = [f for f in form.changed_data if f in form.Meta.fields]
            tenant_policy_changed.send(sender=Tenant, tenant=obj, fields=policy_fields,
                                       credentials=credentials_changed, actor=request.user.get_username())


@admin.register(Domain, site=platform_site)
class DomainAdmin(PublicSiteMixin):
    list_display = ["domain", "tenant", "is_primary"]
    search_fields = ["domain"]

"""Public admin: tenants, their domains, policy and provider credentials (write-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django_tenants.admin import TenantAdminMixin

from config.admin_mixins import PublicSiteMixin
from config.admin_sites import platform_site
from tenants import admin_beat  # noqa: F401 - the beat schedule's admins, on the platform site
from tenants.admin_create import CREATE_POLICY_FIELDS, TenantCreateForm
from tenants.models import Domain, Tenant
from tenants.platform_audit import platform_actor, platform_change
from tenants.services import tenant_delete, tenant_invite_send, tenant_provision
from tenants.signals import tenant_policy_changed
from tenants.validators import validate_allowed_models, validate_domain, validate_provider_order

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


SESSION_POLICY_FIELDS = ("session_idle_minutes", "session_max_hours")


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

    def _keep_current(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        if value in (None, ""):
            return getattr(self.instance, name, None) or Tenant._meta.get_field(name).get_default()
        return value

    def clean_session_idle_minutes(self) -> Any:
        return self._keep_current("session_idle_minutes")

    def clean_session_max_hours(self) -> Any:
        return self._keep_current("session_max_hours")

    class Meta:
        model = Tenant
        fields = [
            "name", "schema_name", "is_active", "allowed_models", "max_tokens_per_request", "requests_per_minute",
            "tokens_per_day", "user_requests_per_minute", "user_tokens_per_day", "retention_days",
            "data_region", "provider_order", "gdpr_account_action", "first_byte_timeout_s",
            "hedge_delay_ms", "anthropic_beta_allowed", "record_policy",
            "session_idle_minutes", "session_max_hours", "mfa_required_for_admins",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in SESSION_POLICY_FIELDS:  # left empty: the current value (or the default) stays
            self.fields[name].required = False
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


class DomainFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if not self.instance.pk:
            return
        deleted = {f.instance.pk for f in self.initial_forms if f.cleaned_data.get("DELETE")}
        added = [f for f in self.extra_forms if f.has_changed() and not f.cleaned_data.get("DELETE")]
        remaining = Domain.objects.filter(tenant=self.instance).exclude(pk__in=deleted).count() + len(added)
        if remaining == 0:
            raise forms.ValidationError("A tenant keeps at least one domain (deleting the last takes it offline).")


class DomainInline(admin.TabularInline):
    model = Domain
    formset = DomainFormSet
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
                       "own_user_tokens_per_day", "own_anthropic_beta_allowed"]
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
        ("Privacy", {"fields": ["retention_days", "gdpr_account_action", "record_policy"]}),
        (
            "Set by the tenant (stricter values win)",
            {"fields": ["processing_notice", "own_allowed_models", "own_max_tokens_per_request",
                        "own_user_requests_per_minute", "own_user_tokens_per_day", "own_anthropic_beta_allowed"]},
        ),
        ("Sign-in security", {"fields": ["session_idle_minutes", "session_max_hours", "mfa_required_for_admins"]}),
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

    add_fieldsets = [
        (None, {"fields": ["name", "slug", "domain", "admin_email"]}),
        ("Policy", {"fields": CREATE_POLICY_FIELDS}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = TenantCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else super().get_inlines(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else super().get_readonly_fields(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # A tenant's domains go with it: the rule that a tenant keeps one domain does not block its deletion.
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, model_count, set(), protected

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The public tenant is the platform itself.
        if obj is not None and obj.schema_name == "public":
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Tenant, form: forms.ModelForm, change: bool) -> None:
        actor = platform_actor(request)
        if not change:
            self._create(request, obj, form, actor)
            return
        assert isinstance(form, TenantForm)
        before = Tenant.objects.filter(pk=obj.pk).values_list("is_active", flat=True).first()
        credentials = dict(obj.credentials or {})
        for provider in form.cleaned_data.get("clear_credentials") or []:
            credentials.pop(provider, None)
        for provider, values in form.credential_changes().items():
            credentials[provider] = {**(credentials.get(provider) or {}), **values}
        credentials_changed = sorted(set(form.cleaned_data.get("clear_credentials") or [])
                                     | set(form.credential_changes()))
        obj.credentials = credentials
        super().save_model(request, obj, form, change)
        policy_fields = sorted(f for f in form.changed_data if f in form.Meta.fields and f != "is_active")
        target = f"tenant:{obj.schema_name}"
        if before is not None and before != obj.is_active:
            platform_change(actor=actor, action="tenant_activate" if obj.is_active else "tenant_deactivate",
                            target=target, tenant_schema=obj.schema_name)
        if policy_fields:
            platform_change(actor=actor, action="tenant_policy_change", target=target,
                            tenant_schema=obj.schema_name, metadata={"fields": policy_fields})
        if credentials_changed:
            platform_change(actor=actor, action="tenant_credentials_change", target=target,
                            tenant_schema=obj.schema_name, metadata={"providers": credentials_changed})
        if policy_fields or credentials_changed or before != obj.is_active:
            fields = policy_fields + (["is_active"] if before != obj.is_active else [])
            tenant_policy_changed.send(sender=Tenant, tenant=obj, fields=fields,
                                       credentials=credentials_changed, actor=request.user.get_username())

    def _create(self, request: HttpRequest, obj: Tenant, form: forms.ModelForm, actor: str) -> None:
        assert isinstance(form, TenantCreateForm)
        data = form.cleaned_data
        result = tenant_provision(slug=data["slug"], name=data["name"], domain=data["domain"],
                                  admin_email=data["admin_email"], invite=True, **form.policy())
        tenant = result.tenant
        platform_change(actor=actor, action="tenant_create", target=f"tenant:{tenant.schema_name}",
                        tenant_schema=tenant.schema_name,
                        metadata={"domain": result.domain.domain, "policy": sorted(form.policy())})
        port = request.get_port()
        netloc = result.domain.domain if port in ("80", "443") else f"{result.domain.domain}:{port}"
        base_url = f"{request.scheme}://{netloc}"
        email = str(data["admin_email"])
        transaction.on_commit(lambda: tenant_invite_send(schema_name=tenant.schema_name, tenant_name=tenant.name,
                                                         email=email, base_url=base_url))
        obj.pk, obj.schema_name, obj.name = tenant.pk, tenant.schema_name, tenant.name
        obj._state.adding = False
        messages.success(request, f"Tenant {tenant.name} is ready at {base_url}/; an invitation to set a password "
                                  f"was sent to {email}.")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The tenant's domains, edited inline: each addition, change and deletion goes to the platform trail."""
        actor = platform_actor(request)
        instances = formset.save(commit=False)
        for domain in formset.deleted_objects:
            platform_change(actor=actor, action="domain_delete", target=f"domain:{domain.domain}",
                            tenant_schema=form.instance.schema_name)
            domain.delete()
        for domain in instances:
            adding = domain._state.adding
            domain.save()
            platform_change(actor=actor, action="domain_add" if adding else "domain_change",
                            target=f"domain:{domain.domain}", tenant_schema=form.instance.schema_name,
                            metadata={"is_primary": domain.is_primary})
        formset.save_m2m()

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        # The schema stays (data is kept until an operator drops it with the CLI); its hosts stop answering.
        platform_change(actor=platform_actor(request), action="tenant_delete", target=f"tenant:{obj.schema_name}",
                        tenant_schema=obj.schema_name)
        tenant_delete(tenant=obj, drop_schema=False)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for tenant in queryset.exclude(schema_name="public"):
            self.delete_model(request, tenant)


class DomainForm(forms.ModelForm):
    class Meta:
        model = Domain
        fields = ["domain", "tenant", "is_primary"]

    def clean_domain(self) -> str:
        domain = str(self.cleaned_data.get("domain") or "").strip().lower()
        validate_domain(domain)
        return domain

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        tenant = cleaned.get("tenant")
        old = Domain.objects.filter(pk=self.instance.pk).select_related("tenant").first() if self.instance.pk \
            else None
        if old is not None and tenant is not None and old.tenant_id != tenant.pk:
            if old.tenant.schema_name == "public" or tenant.schema_name == "public":
                raise forms.ValidationError("The platform's own host cannot be moved to or from a tenant.")
            if not old.tenant.domains.exclude(pk=old.pk).exists():
                raise forms.ValidationError(f"{old.domain} is {old.tenant.name}'s only domain; add another first.")
        return cleaned


@admin.register(Domain, site=platform_site)
class DomainAdmin(PublicSiteMixin):
    form = DomainForm
    list_display = ["domain", "tenant", "is_primary"]
    search_fields = ["domain"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A tenant's (or the platform's) only domain: deleting it would take them offline.
        if obj is not None and (obj.tenant.schema_name == "public"
                                or not obj.tenant.domains.exclude(pk=obj.pk).exists()):
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Domain, form: Any, change: bool) -> None:
        old = Domain.objects.filter(pk=obj.pk).values_list("domain", "tenant__schema_name").first() if change else None
        super().save_model(request, obj, form, change)
        platform_change(actor=platform_actor(request), action="domain_change" if change else "domain_add",
                        target=f"domain:{obj.domain}", tenant_schema=obj.tenant.schema_name,
                        metadata={"before": list(old) if old else None,
                                  "after": [obj.domain, obj.tenant.schema_name, obj.is_primary]})

    def delete_model(self, request: HttpRequest, obj: Domain) -> None:
        platform_change(actor=platform_actor(request), action="domain_delete", target=f"domain:{obj.domain}",
                        tenant_schema=obj.tenant.schema_name)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for domain in queryset:
            if self.has_delete_permission(request, domain):
                self.delete_model(request, domain)

"""The platform's "add tenant" form: name, slug, first domain, first administrator, quotas; usable on return.

The form only validates; tenants.services.tenant_provision does the work (row, schema cloned from the template,
domain, roles, first administrator) all or nothing, and tenant_invite_send mails the administrator a set-password
link that expires (PASSWORD_RESET_TIMEOUT) through Django's mail backend. Every refusal (slug taken, domain taken,
bad quota) is a form error, never a 500.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from tenants.models import Domain, Tenant
from tenants.services import schema_name_for
from tenants.validators import validate_allowed_models, validate_domain, validate_slug

CREATE_POLICY_FIELDS = ["allowed_models", "max_tokens_per_request", "requests_per_minute", "tokens_per_day",
                        "user_requests_per_minute", "user_tokens_per_day", "retention_days"]


class TenantCreateForm(forms.ModelForm):
    slug = forms.CharField(max_length=42, help_text="Lowercase letters, digits and hyphens, e.g. acme.")
    domain = forms.CharField(
        max_length=253, required=False,
        help_text=f"The tenant's host. Empty: <slug>.{settings.ATRIUM_BASE_DOMAIN}.")
    admin_email = forms.EmailField(
        label="First administrator's email",
        help_text="Receives a link to set a password (it expires); becomes the tenant's admin, never a superuser.")
    allowed_models = forms.CharField(
        required=False, help_text="Comma-separated tiers or model ids (opus, sonnet, haiku, claude-…). Empty: all.")

    class Meta:
        model = Tenant
        fields = ["name", *CREATE_POLICY_FIELDS]

    def clean_slug(self) -> str:
        slug = str(self.cleaned_data["slug"]).strip().lower()
        validate_slug(slug)
        if Tenant.objects.filter(schema_name=schema_name_for(slug)).exists():
            raise ValidationError(f"A tenant with slug {slug!r} already exists.")
        return slug

    def clean_domain(self) -> str:
        domain = str(self.cleaned_data.get("domain") or "").strip().lower()
        if domain:
            validate_domain(domain)
            if Domain.objects.filter(domain=domain).exists():
                raise ValidationError(f"The domain {domain!r} already belongs to a tenant.")
        return domain

    def clean_admin_email(self) -> str:
        email = str(self.cleaned_data["admin_email"]).strip()
        validate_email(email)
        return email

    def clean_allowed_models(self) -> list[str]:
        names = [n.strip() for n in str(self.cleaned_data.get("allowed_models") or "").split(",") if n.strip()]
        validate_allowed_models(names)
        return names

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        slug = cleaned.get("slug")
        if slug and not cleaned.get("domain"):
            domain = f"{slug}.{settings.ATRIUM_BASE_DOMAIN}".lower()
            if Domain.objects.filter(domain=domain).exists():
                self.add_error("domain", f"The domain {domain!r} already belongs to a tenant.")
            cleaned["domain"] = domain
        return cleaned

    def _post_clean(self) -> None:
        # The instance is built by the provisioning service, not by the form: skip the model's full_clean here
        # (schema_name is derived from the slug; tenant_provision validates the row itself).
        return None

    def policy(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in CREATE_POLICY_FIELDS if name in self.cleaned_data}

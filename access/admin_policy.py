"""The tenant site's policy page: what the platform set (read-only) and what this tenant may tighten.

The platform owns quotas, token ceilings, the allow-list, providers and their order, credentials, retention and
domains (tenants/admin.py, platform site only). A tenant's administrator sees those values here and may only make
them stricter for its own users (a lower token ceiling, lower per-user limits, a narrower allow-list) and write its
processing notice. Enforcement applies both (Tenant.effective_*, Tenant.model_allowed): the stricter wins, so no
value entered here can loosen the platform's. Only the current host's tenant is ever shown or written.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from access.audit_hooks import access_audit
from access.models import TenantPolicy
from config.admin_mixins import TenantSiteMixin
from config.admin_sites import tenant_site
from tenants.validators import validate_allowed_models

TENANT_EDITABLE = ["own_allowed_models", "own_max_tokens_per_request", "own_user_requests_per_minute",
                   "own_user_tokens_per_day", "own_anthropic_beta_allowed", "processing_notice"]
BRAND = ["brand_colour", "accent_colour"]
PLATFORM_READONLY = ["name", "allowed_models", "max_tokens_per_request", "requests_per_minute", "tokens_per_day",
                     "user_requests_per_minute", "user_tokens_per_day", "retention_days", "provider_order",
                     "data_region", "configured_providers", "bedrock_external_id"]


def _lowest(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class TenantPolicyForm(forms.ModelForm):  # type: ignore[type-arg]  # not subscriptable at run time
    own_allowed_models = forms.CharField(
        required=False, label="Own allow-list",
        help_text="Comma-separated tiers or model ids, narrower than the platform's. Empty adds no restriction.")

    own_anthropic_beta_allowed = forms.CharField(
        required=False, label="Own anthropic-beta list",
        help_text="Comma-separated anthropic-beta names, a subset of the platform's. Empty adds no restriction.")

    class Meta:
        model = TenantPolicy
        fields = TENANT_EDITABLE + BRAND
        widgets = {name: forms.TextInput(attrs={"type": "color"}) for name in BRAND}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["own_allowed_models"] = ", ".join(self.instance.own_allowed_models or [])
        self.initial["own_anthropic_beta_allowed"] = ", ".join(self.instance.own_anthropic_beta_allowed or [])
        for name in BRAND:
            self.fields[name].required = False

    def clean_own_anthropic_beta_allowed(self) -> list[str]:
        raw = self.cleaned_data.get("own_anthropic_beta_allowed") or ""
        names = list(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
        platform = set(self.instance.anthropic_beta_allowed or [])
        outside = [n for n in names if n not in platform]
        if outside:
            raise forms.ValidationError(f"Not on the platform's anthropic-beta list: {', '.join(outside)}.")
        return names

    def _colour(self, field: str) -> str:
        # Optional in the form: a POST without it (or a blank value) keeps the current colour.
        return str(self.cleaned_data.get(field) or getattr(self.instance, field))

    def clean_brand_colour(self) -> str:
        return self._colour("brand_colour")

    def clean_accent_colour(self) -> str:
        return self._colour("accent_colour")

    def clean_own_allowed_models(self) -> list[str]:
        names = [n.strip() for n in (self.cleaned_data.get("own_allowed_models") or "").split(",") if n.strip()]
        validate_allowed_models(names)
        platform = set(self.instance.allowed_models or [])
        outside = [n for n in names if platform and n not in platform]
        if outside:
            raise forms.ValidationError(f"Not on the platform's allow-list: {', '.join(outside)}.")
        return names

    def _at_most(self, field: str, ceiling: int | None, what: str) -> int | None:
        value: int | None = self.cleaned_data.get(field)
        if value is not None and ceiling is not None and value > ceiling:
            raise forms.ValidationError(f"At most {ceiling}: the platform's {what}. You may only lower it.")
        return value

    def clean_own_max_tokens_per_request(self) -> int | None:
        return self._at_most("own_max_tokens_per_request", self.instance.max_tokens_per_request,
                             "max tokens per request")

    def clean_own_user_requests_per_minute(self) -> int | None:
        t = self.instance
        return self._at_most("own_user_requests_per_minute",
                             _lowest(t.user_requests_per_minute, t.requests_per_minute), "requests per minute")

    def clean_own_user_tokens_per_day(self) -> int | None:
        t = self.instance
        return self._at_most("own_user_tokens_per_day", _lowest(t.user_tokens_per_day, t.tokens_per_day),
                             "tokens per day")


@admin.register(TenantPolicy, site=tenant_site)
class TenantPolicyAdmin(TenantSiteMixin):
    form = TenantPolicyForm
    fieldsets = [
        ("Set by the platform (read-only)", {"fields": list[Any](PLATFORM_READONLY)}),
        ("Set by this organisation (may only be stricter)", {"fields": list[Any](TENANT_EDITABLE)}),
        ("Look of this admin workspace", {"fields": list[Any](BRAND)}),
    ]
    readonly_fields = PLATFORM_READONLY

    @admin.display(description="Providers with their own credentials")
    def configured_providers(self, obj: TenantPolicy) -> str:
        stored = obj.credentials or {}
        return ", ".join(p for p in ("anthropic", "bedrock", "vertex") if stored.get(p)) or "platform defaults"

    @staticmethod
    def _is_admin(request: HttpRequest) -> bool:
        user: Any = request.user
        return bool(user.is_active and user.is_staff and user.has_perm("access.admin"))

    @staticmethod
    def _own(request: HttpRequest, obj: Any) -> bool:
        tenant = getattr(request, "tenant", None)
        return obj is None or (tenant is not None and obj.pk == tenant.pk)

    def get_queryset(self, request: HttpRequest) -> QuerySet[TenantPolicy]:
        tenant = getattr(request, "tenant", None)
        own: QuerySet[TenantPolicy] = TenantPolicy.objects.filter(pk=getattr(tenant, "pk", None))
        return own

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.host_ok(request) and self._is_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.host_ok(request) and self._is_admin(request) and self._own(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.host_ok(request) and self._is_admin(request) and self._own(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        if not self.has_view_permission(request) or tenant is None:
            return super().changelist_view(request, extra_context)  # Django's own refusal
        return HttpResponseRedirect(reverse("admin:access_tenantpolicy_change", args=[tenant.pk]))

    def save_model(self, request: HttpRequest, obj: TenantPolicy, form: forms.ModelForm[TenantPolicy],
                   change: bool) -> None:
        changed = [f for f in form.changed_data if f in TENANT_EDITABLE
                   or (f in BRAND and form.cleaned_data.get(f) != form.initial.get(f))]
        if not changed:
            return
        with transaction.atomic():
            # Only the tenant-owned columns are written: whatever else a hand-made POST carries is not saved.
            obj.save(update_fields=changed)
            access_audit("policy_change", user=request.user, request=request,
                         metadata={"source": "admin", "by": "tenant admin", "fields": sorted(changed),
                                   "values": {f: form.cleaned_data.get(f) for f in changed
                                              if f != "processing_notice"}})
            if "processing_notice" in changed:
                from audit.services import notice_publish

                notice_publish(obj)  # the new version, with its audit entry, in this transaction

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None  # the audit entry above is the record; Django's log would point at a public-schema row

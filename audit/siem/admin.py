"""Platform admin of SIEM destinations: the address is checked like every outbound address a tenant-facing setting
holds (config.outbound), the webhook secret is write-only, each chain's cursor is shown read-only."""

from __future__ import annotations

import ssl
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from audit.platform.models import SiemCursor, SiemDestination
from audit.siem.services import siem_destination_save
from audit.siem.transports import SCHEMES, url_problem
from config.admin_sites import platform_site
from config.outbound import OutboundRefused, outbound_check
from tenants.platform_admin import PlatformAuditMixin


class SiemDestinationForm(forms.ModelForm):  # type: ignore[type-arg]
    secret = forms.CharField(required=False, strip=True, widget=forms.PasswordInput(render_value=False),
                             help_text="Webhooks: the key of the X-Atrium-Signature HMAC. Stored encrypted, never "
                                       "shown; leave blank to keep the current one.")

    class Meta:
        model = SiemDestination
        fields = ["name", "tenant", "url", "secret", "ca_bundle", "verify_tls", "backfill", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant_field: Any = self.fields.get("tenant")
        if tenant_field is not None:  # empty means the platform trail
            tenant_field.queryset = tenant_field.queryset.exclude(schema_name="public")

    def clean_url(self) -> str:
        url = str(self.cleaned_data.get("url") or "").strip()
        problem = url_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        plain = parts.scheme in ("syslog", "syslog+tcp")
        try:
            outbound_check(f"{'http' if plain else 'https'}://{parts.netloc}/")
        except OutboundRefused as exc:
            raise forms.ValidationError(exc.message) from exc
        return url

    def clean_secret(self) -> str:
        value = str(self.cleaned_data.get("secret") or "")
        return value or str(self.instance.secret or "")

    def clean_ca_bundle(self) -> str:
        pem = str(self.cleaned_data.get("ca_bundle") or "").strip()
        if pem:
            try:
                ssl.create_default_context(cadata=pem)
            except (ssl.SSLError, ValueError) as exc:
                raise forms.ValidationError("not a PEM certificate bundle") from exc
        return pem

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        url = str(data.get("url") or "")
        if url and SCHEMES.get(url.split(":", 1)[0]) == "webhook" and not data.get("secret"):
            self.add_error("secret", "A webhook needs a secret: receivers check the signature.")
        return data


class SiemCursorInline(admin.TabularInline):  # type: ignore[type-arg]
    model = SiemCursor
    extra = 0
    can_delete = False
    fields = ("chain", "last_seq", "head_seq", "failures", "next_attempt_at", "last_error", "last_error_at",
              "delivered_at", "caught_up_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SiemDestination, site=platform_site)
class SiemDestinationAdmin(PlatformAuditMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    audit_kind = "siem_destination"
    form = SiemDestinationForm
    list_display = ["name", "tenant", "url", "owner", "enabled", "created_at"]
    list_filter = ["enabled", "owner"]
    search_fields = ["name", "url", "tenant__schema_name"]
    inlines = [SiemCursorInline]
    readonly_fields = ["secret_set"]
    fieldsets = [
        (None, {"fields": ["name", "tenant", "url", "enabled", "backfill"]}),
        ("Credentials and TLS", {"fields": ["secret", "secret_set", "ca_bundle", "verify_tls"]}),
    ]

    @admin.display(description="secret stored")
    def secret_set(self, obj: SiemDestination) -> str:
        return "yes" if obj.pk and obj.secret else "no"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        siem_destination_save(destination=obj)
        self._audit(request, "change" if change else "add", obj,
                    {"fields": sorted(getattr(form, "changed_data", []) or [])})

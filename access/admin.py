"""Tenant admin for access: the SSO configuration (with group → role mapping), identities, API keys."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from access import (  # noqa: F401 - register on the tenant site
    admin_budgets,
    admin_invitations,
    admin_lockout,
    admin_policy,
    admin_users,
)
from access.audit_hooks import access_audit
from access.models import ApiKey, OIDCConfig, OIDCGroupMapping, UserIdentity
from access.oidc import OIDCError, discovery, sso_connection_test, sso_connection_test_slot
from access.services import api_key_create, api_key_create_check, api_key_revoke
from access.sso_test import SsoTestRefused, callback_url, sso_test_start
from access.workspace import workspace_overview
from config.admin_mixins import TenantSiteMixin
from config.admin_sites import tenant_site
from config.users import request_user

tenant_site.overview_provider = workspace_overview


class TenantOnlyAdmin(TenantSiteMixin):
    """These tables exist only in tenant schemas."""


class OIDCConfigForm(forms.ModelForm):  # type: ignore[type-arg]  # not subscriptable at run time
    # IdP URLs are typed in full; assume https for a bare host rather than Django 5's http default.
    issuer = forms.URLField(max_length=500, assume_scheme="https",
                            help_text=OIDCConfig._meta.get_field("issuer").help_text)
    discovery_url = forms.URLField(max_length=500, required=False, assume_scheme="https",
                                   help_text=OIDCConfig._meta.get_field("discovery_url").help_text)
    end_session_endpoint = forms.URLField(max_length=500, required=False, assume_scheme="https",
                                          help_text=OIDCConfig._meta.get_field("end_session_endpoint").help_text)
    client_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown again. Leave blank to keep the current secret.",
    )

    class Meta:
        model = OIDCConfig
        fields = [
            "enabled", "display_name", "issuer", "discovery_url", "verify_ssl", "end_session_endpoint",
            "client_id", "client_secret", "scopes", "groups_claim", "allowed_email_domains", "api_audiences",
        ]

    def clean_client_secret(self) -> str:
        value: str = self.cleaned_data.get("client_secret") or ""
        if not value and self.instance.pk:
            return str(self.instance.client_secret or "")
        return value

    def clean(self) -> dict[str, Any]:
        """Switching SSO on (or saving it on) needs a reachable IdP and a successful test sign-in with exactly these
        settings: otherwise members would meet a broken sign-in button and bearer tokens would all fail."""
        data = super().clean() or {}
        if not data.get("enabled") or self.errors:
            return data
        candidate = OIDCConfig(**{f.name: getattr(self.instance, f.name) for f in OIDCConfig._meta.concrete_fields})
        for name in ("issuer", "discovery_url", "client_id", "client_secret", "verify_ssl", "scopes"):
            if name in data:
                setattr(candidate, name, data[name])
        try:
            discovery(candidate, refresh=True)
        except OIDCError as exc:
            self.add_error("enabled", f"Single sign-on cannot be switched on: the identity provider is not reachable "
                                      f"or not usable ({exc.message}). Save with “Enabled” unticked, fix the "
                                      f"settings, then run a test sign-in.")
            return data
        if not self.instance.pk or not (candidate.tested_at
                                        and candidate.tested_fingerprint == candidate.connection_fingerprint()):
            self.add_error("enabled", "Single sign-on cannot be switched on before a successful test sign-in with "
                                      "these settings. Save with “Enabled” unticked, use “Test sign-in”, then "
                                      "switch it on.")
        return data


class OIDCGroupMappingInline(admin.TabularInline):  # type: ignore[type-arg]  # not subscriptable at run time
    model = OIDCGroupMapping
    extra = 1
    verbose_name = "IdP group → Atrium role"
    verbose_name_plural = "Group → role mapping (roles listed here are managed by SSO and synced at each login)"


@admin.register(OIDCConfig, site=tenant_site)
class OIDCConfigAdmin(TenantOnlyAdmin):
    form = OIDCConfigForm
    inlines = [OIDCGroupMappingInline]
    list_display = ["issuer", "enabled", "client_id", "updated_at"]
    readonly_fields = ["secret_set", "test_status", "updated_at"]
    change_form_template = "admin/access/oidcconfig/change_form.html"
    fieldsets = [
        (None, {"fields": ["enabled", "test_status", "display_name"]}),
        ("Identity provider", {"fields": ["issuer", "discovery_url", "verify_ssl",
                                          "end_session_endpoint"]}),
        ("Client", {"fields": ["client_id", "client_secret", "secret_set", "scopes"]}),
        ("Claims and admission", {"fields": ["groups_claim", "allowed_email_domains", "api_audiences"]}),
        (None, {"fields": ["updated_at"]}),
    ]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        # One configuration per tenant.
        return super().has_add_permission(request, *args) and not OIDCConfig.objects.exists()

    def save_model(self, request: HttpRequest, obj: OIDCConfig, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # Which fields changed, never their values (the client secret above all).
        access_audit("sso_config_change", user=request.user, request=request,
                     metadata={"source": "admin", "created": not change,
                               "fields": sorted(f for f in form.changed_data if f != "client_secret"),
                               "secret_changed": "client_secret" in form.changed_data and bool(
                                   form.data.get("client_secret"))})

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.has_changed():
            access_audit("sso_config_change", user=request.user, request=request,
                         metadata={"source": "admin", "group_mappings": sorted(
                             f"{m.claim_value}->{m.group.name}" for m in OIDCGroupMapping.objects.select_related(
                                 "group"))})

    def delete_model(self, request: HttpRequest, obj: OIDCConfig) -> None:
        access_audit("sso_config_change", user=request.user, request=request,
                     metadata={"source": "admin", "deleted": True})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for config in queryset:
            self.delete_model(request, config)

    @admin.display(description="Test sign-in")
    def test_status(self, obj: OIDCConfig) -> str:
        if not obj.pk or obj.tested_at is None:
            return "not run yet"
        when = f"{timezone.localtime(obj.tested_at):%d %b %Y %H:%M}"
        if obj.test_current:
            return f"succeeded on {when} with the current settings"
        return f"succeeded on {when}, but the settings changed since: run it again before switching SSO on"

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Any = None) -> Any:
        context.update(callback_url=callback_url(request),
                       logout_redirect_url=request.build_absolute_uri(reverse("login")))
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Client secret stored")
    def secret_set(self, obj: OIDCConfig) -> str:
        return "yes" if obj.pk and obj.client_secret else "no"

    def get_urls(self) -> list[Any]:
        from django.urls import path

        extra = [path("<path:object_id>/test-connection/", self.admin_site.admin_view(self.test_connection),
                      name="access_oidcconfig_test_connection"),
                 path("<path:object_id>/test-sign-in/", self.admin_site.admin_view(self.test_sign_in),
                      name="access_oidcconfig_test_sign_in")]
        return extra + super().get_urls()

    def test_connection(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST only, rate-limited per tenant: fetch the discovery document and the key set once, now.

        Viewing the page never fetches anything (it used to, on every view: a port-scan oracle). The result says
        whether it worked and why not, never what the fetched documents contain."""
        from django.shortcuts import redirect

        config = self.get_object(request, object_id)
        if config is None or not self.has_change_permission(request, config):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        back = redirect(reverse("tenant_admin:access_oidcconfig_change", args=[config.pk]))
        if not sso_connection_test_slot():
            messages.error(request, f"Connection tests are limited to one every "
                                    f"{settings.ATRIUM_OIDC_TEST_INTERVAL_S} seconds; try again shortly.")
            return back
        try:
            keys = sso_connection_test(config)
        except OIDCError as exc:
            messages.error(request, f"Not usable: {exc.message}")
        else:
            messages.success(request, f"Connection OK: discovery document and key set fetched ({keys} keys).")
        return back


    def test_sign_in(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST only (opened in a new tab by the form): send this browser to the IdP for a test sign-in."""
        from django.shortcuts import redirect, render

        config = self.get_object(request, object_id)
        if config is None or not self.has_change_permission(request, config):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            return redirect(sso_test_start(request, config))
        except SsoTestRefused as exc:
            from access.sso_test import SsoTestResult

            return render(request, "access/sso_test_result.html",
                          {"result": SsoTestResult(ok=False, message=exc.message),
                           "tenant": getattr(request, "tenant", None)}, status=400)


@admin.register(UserIdentity, site=tenant_site)
class UserIdentityAdmin(TenantOnlyAdmin):
    list_display = ["user", "issuer", "subject", "email", "last_login_at"]
    search_fields = ["user__username", "email", "subject"]
    readonly_fields = ["user", "issuer", "subject", "email", "created_at", "last_login_at"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # identities come from sign-ins, not by hand


class ApiKeyAddForm(forms.ModelForm):  # type: ignore[type-arg]  # not subscriptable at run time
    class Meta:
        model = ApiKey
        fields = ["user", "name", "expires_at"]

    def clean(self) -> dict[str, Any]:
        """A key the service would refuse (expiry in the past, too many active keys) is a form error, not a 500."""
        cleaned: dict[str, Any] = super().clean() or {}
        user = cleaned.get("user")
        if user is not None:
            try:
                api_key_create_check(user=user, expires_at=cleaned.get("expires_at"))
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return cleaned


@admin.register(ApiKey, site=tenant_site)
class ApiKeyAdmin(TenantOnlyAdmin):
    list_display = ["display", "name", "user", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "name", "user__username"]
    actions = ["revoke_keys"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["user", "name", "expires_at"]
        return ["user", "name", "prefix", "created_at", "created_by", "expires_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return self.get_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead, so the key's history stays

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return  # keys are immutable apart from revocation
        # The form already refused what the service would (ApiKeyAddForm.clean).
        key, raw = api_key_create(user=obj.user, name=obj.name, expires_at=obj.expires_at,
                                  created_by=request_user(request), request=request)
        obj.pk, obj.prefix, obj.created_at = key.pk, key.prefix, key.created_at
        obj._state.adding = False
        # Shown once, in the response to this POST (response_add): only the hash is stored, and the raw key never
        # goes into a cookie (the messages framework's cookie is readable without any secret), the session or a URL.
        obj.raw_key = raw  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        raw = getattr(obj, "raw_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "key": obj, "raw": raw,
                   "title": "API key created"}
        response = TemplateResponse(request, "admin/access/apikey/created.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=key, revoked_by=request_user(request), request=request)
            count += 1
        messages.success(request, f"Revoked {count} key(s).")


"""Sign-in lockouts (django-axes' AccessAttempt) with an audited "Unlock" action, and TOTP devices (django-otp) and
passkeys (django-otp-webauthn) with an audited removal, on the tenant admin site.

Axes' own admin is off (AXES_ENABLE_ADMIN = False): it would register on Django's default site, which is mounted
nowhere. Here a tenant's lockouts are seen and lifted by its administrators (the access.admin permission) on the
tenant site. A model is on one admin site only (tests/tenants/test_admin_walk.py), so the platform host's own
lockouts (its /admin/login/) are lifted with `manage.py axes_reset_username <name>` (docs/security.md).
"""

from __future__ import annotations

from typing import Any

from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from access.lockout import lockout_clear
from config.admin_mixins import ReadOnlyAdminMixin, TenantSiteMixin
from config.admin_sites import tenant_site


class _LockoutAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["username", "ip_address", "failures_since_start", "attempt_time"]
    search_fields = ["username", "ip_address"]
    ordering = ["-attempt_time"]
    fields = ["username", "ip_address", "failures_since_start", "attempt_time", "path_info"]
    readonly_fields = ["username", "ip_address", "failures_since_start", "attempt_time", "path_info"]
    actions = ["unlock"]

    def may_unlock(self, request: HttpRequest) -> bool:
        raise NotImplementedError

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.may_unlock(request)  # the site mixin checks the host first

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.may_unlock(request)

    @admin.action(description="Unlock: forget these failed sign-ins")
    def unlock(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        if not self.may_unlock(request):
            return
        count = lockout_clear(attempts=list(queryset), by=request.user, request=request)
        messages.success(request, f"Unlocked {count} sign-in record(s).")


class TenantLockoutAdmin(TenantSiteMixin, _LockoutAdmin):
    def may_unlock(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("access.admin"))


AccessAttempt._meta.verbose_name = "sign-in lockout"
AccessAttempt._meta.verbose_name_plural = "sign-in lockouts"
tenant_site.register(AccessAttempt, TenantLockoutAdmin)


# --- TOTP devices: a tenant administrator removes a lost one (the user enrols again at the next sign-in) ----------
class TenantTOTPDeviceAdmin(TenantSiteMixin):
    method = "totp"
    list_display = ["user", "name", "confirmed", "created_at", "last_used_at"]
    search_fields = ["user__username", "name"]
    fields = ["user", "name", "confirmed", "created_at", "last_used_at"]
    readonly_fields = ["user", "name", "confirmed", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # enrolment is the user's own (/account/mfa/setup/): the secret is never seen by anyone else

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(self.host_ok(request) and request.user.has_perm("access.admin"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        from access.audit_hooks import access_audit

        with transaction.atomic():
            access_audit("mfa_device_removed", user=request.user, request=request, subject_id=obj.user_id,
                         metadata={"method": self.method})
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for device in queryset:
            self.delete_model(request, device)


if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)  # django-otp registers on the default site, which is mounted nowhere
tenant_site.register(TOTPDevice, TenantTOTPDeviceAdmin)


# --- Passkeys: the same, for a lost security key or phone (the user registers a new one at the next sign-in) -----
class TenantPasskeyAdmin(TenantTOTPDeviceAdmin):
    method = "webauthn"


WebAuthnCredential._meta.verbose_name = "passkey"
WebAuthnCredential._meta.verbose_name_plural = "passkeys"
tenant_site.register(WebAuthnCredential, TenantPasskeyAdmin)

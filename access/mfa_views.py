"""Enrolment and verification of a second factor, TOTP or a passkey (/account/mfa/setup/, /account/mfa/verify/)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import segno
from django import forms
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from access.audit_hooks import access_audit
from access.passkeys import rp_id, user_has_passkey


def mfa_audit(request: HttpRequest, event: str, *, method: str = "totp", status: str = "success") -> None:
    """In the tenant's chain on a tenant host; in the platform trail for platform staff on the public host."""
    from django.db import connection
    from django_tenants.utils import get_public_schema_name

    user: Any = request.user
    with transaction.atomic():
        if getattr(connection, "schema_name", None) == get_public_schema_name():
            from audit.platform.services import platform_audit_record

            platform_audit_record(actor=user.get_username(), action=event, target=f"user:{user.pk}",
                                  metadata={"method": method, "status": status})
        else:
            access_audit(event, user=user, request=request, status=status, metadata={"method": method})


class TokenForm(forms.Form):
    token = forms.RegexField(regex=r"^\s*\d{6}\s*$", max_length=12, label="Six-digit code",
                             error_messages={"invalid": "Enter the six digits your authenticator app shows."})


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/"
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) else "/"


def _verify(request: HttpRequest, device: TOTPDevice, form: TokenForm) -> bool:
    token = form.cleaned_data["token"].strip()
    ok = bool(device.verify_token(token))  # django-otp: drift window, replay refusal and throttling per device
    if ok:
        otp_login(request, device)
    return ok


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mfa_setup(request: HttpRequest) -> HttpResponse:
    """First enrolment: a TOTP device with a new secret (confirmed by the first correct code) or a passkey
    (access/passkeys.py). A verified session may come back here to add a passkey beside its TOTP device."""
    user: Any = request.user
    verified = bool(getattr(user, "is_verified", lambda: False)())
    if user_has_device(user) and not verified:
        return HttpResponseRedirect(f"/account/mfa/verify/?next={quote(_next(request))}")
    show_totp = not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    context: dict[str, Any] = {"show_totp": show_totp, "next": _next(request), "rp_id": rp_id(request)}
    form = TokenForm(request.POST or None)
    if show_totp:
        device = TOTPDevice.objects.filter(user=user, confirmed=False).first() or TOTPDevice.objects.create(
            user=user, name="Authenticator app", confirmed=False)
        if request.method == "POST" and form.is_valid():
            if _verify(request, device, form):
                with transaction.atomic():
                    TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
                    mfa_audit(request, "mfa_enrolled")
                return HttpResponseRedirect(_next(request))
            form.add_error("token", "That code is not right (or came too late); try the next one.")
        context["secret"] = base64.b32encode(device.bin_key).decode().rstrip("=")
        context["qr"] = segno.make(device.config_url, error="m").svg_inline(scale=4, dark="#222", light="#fff")
    context["form"] = form
    return render(request, "access/mfa_setup.html", context,
                  status=400 if request.method == "POST" else 200)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mfa_verify(request: HttpRequest) -> HttpResponse:
    """A TOTP code (the form here) or a passkey (its ceremony posts to access/passkeys.py's views)."""
    user: Any = request.user
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    has_passkey = user_has_passkey(user)
    if device is None and not has_passkey:
        return HttpResponseRedirect(f"/account/mfa/setup/?next={quote(_next(request))}")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and device is None:
        form.add_error(None, "Use your passkey.")
    elif request.method == "POST" and device is not None and form.is_valid():
        if _verify(request, device, form):
            mfa_audit(request, "mfa_verified")
            return HttpResponseRedirect(_next(request))
        mfa_audit(request, "mfa_failed", status="error")
        form.add_error("token", "That code is not right; wait for the next one and try again.")
    return render(request, "access/mfa_verify.html",
                  {"form": form, "next": _next(request), "has_totp": device is not None,
                   "has_passkey": has_passkey, "rp_id": rp_id(request)},
                  status=400 if request.method == "POST" else 200)

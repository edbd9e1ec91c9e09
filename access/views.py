"""Web pages of access: a user's own API keys (/account/keys/)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from access.selectors import api_key_get_for_owner, api_key_list
from access.services import api_key_create, api_key_revoke
from config.users import request_user


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'laptop script'.")
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, help_text="Leave empty for a key that does not expire."
    )


# A new key travels from the POST to the page it redirects to in the server-side session, encrypted, for a few
# minutes, and is removed when shown: reloading that page (or going back) never creates or shows it again.
NEW_KEY_SESSION = "atrium_new_api_key"
NEW_KEY_TTL_S = 300


def _new_key_keep(request: HttpRequest, raw: str) -> None:
    from tenants.crypto import encrypt

    request.session[NEW_KEY_SESSION] = {"key": encrypt(raw), "at": timezone.now().timestamp()}


def _new_key_pop(request: HttpRequest) -> str | None:
    from tenants.crypto import decrypt

    kept = request.session.pop(NEW_KEY_SESSION, None)
    if not isinstance(kept, dict) or timezone.now().timestamp() - float(kept.get("at", 0)) > NEW_KEY_TTL_S:
        return None
    try:
        return decrypt(str(kept["key"]))
    except Exception:  # a rotated encryption key: the key is simply not shown again
        return None


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def account_keys(request: HttpRequest) -> HttpResponse:
    """List, create and revoke the signed-in user's keys. POST, then redirect: a new key is shown once, on the
    page the creation redirects to (POST-redirect-GET, so a reload cannot create a second key)."""
    form = ApiKeyCreateForm()
    new_key: str | None = _new_key_pop(request) if request.method == "GET" else None
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "revoke":
            key = api_key_get_for_owner(user=request_user(request), key_id=request.POST.get("key_id", ""))
            if key is None:
                messages.error(request, "No such key.")
            else:
                api_key_revoke(api_key=key, revoked_by=request_user(request), request=request)
                messages.success(request, f"Key {key.display} revoked.")
            return redirect("account_keys")
        form = ApiKeyCreateForm(request.POST)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            expires_at = timezone.now() + timedelta(days=days) if days else None
            try:
                _key, raw = api_key_create(user=request_user(request), name=form.cleaned_data["name"],
                                           expires_at=expires_at, request=request)
                _new_key_keep(request, raw)
                return redirect("account_keys")
            except ValueError as exc:
                form.add_error(None, str(exc))
                status = 400
        else:
            status = 400
    context = {
        "form": form,
        "keys": api_key_list(user=request_user(request)),
        "new_key": new_key,
        "now": timezone.now(),
        "max_keys": settings.ATRIUM_API_KEYS_PER_USER,
    }
    return render(request, "access/account_keys.html", context, status=status)

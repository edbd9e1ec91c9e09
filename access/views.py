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


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'laptop script'.")
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, help_text="Leave empty for a key that does not expire."
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def account_keys(request: HttpRequest) -> HttpResponse:
    """List, create and revoke the signed-in user's keys. A new key is shown once, in this response only."""
    form = ApiKeyCreateForm()
    new_key: str | None = None
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "revoke":
            key = api_key_get_for_owner(user=request.user, key_id=request.POST.get("key_id", ""))
            if key is None:
                messages.error(request, "No such key.")
            else:
                api_key_revoke(api_key=key, revoked_by=request.user, request=request)
                messages.success(request, f"Key {key.display} revoked.")
            return redirect("account_keys")
        form = ApiKeyCreateForm(request.POST)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            expires_at = timezone.now() + timedelta(days=days) if days else None
            try:
                _key, new_key = api_key_create(user=request.user, name=form.cleaned_data["name"],
                                               expires_at=expires_at, request=request)
                form = ApiKeyCreateForm()
            except ValueError as exc:
                form.add_error(None, str(exc))
                status = 400
        else:
            status = 400
    context = {
        "form": form,
        "keys": api_key_list(user=request.user),
        "new_key": new_key,
        "now": timezone.now(),
        "max_keys": settings.ATRIUM_API_KEYS_PER_USER,
    }
    return render(request, "access/account_keys.html", context, status=status)

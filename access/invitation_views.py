"""The invitee's page: an invitation link (access/invitations.py) opens a form to choose a password."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, password_validation
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from access.invitations import InvitationInvalid, invitation_accept, invitation_check
from access.models import Invitation
from access.selectors import oidc_config_enabled


class ChoosePasswordForm(forms.Form):
    password1 = forms.CharField(label="New password", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                                help_text=password_validation.password_validators_help_text_html())
    password2 = forms.CharField(label="New password again", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def __init__(self, *args: Any, invitation: Invitation, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invitation = invitation

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, second = data.get("password1"), data.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ.")
        elif first:
            # The validators compare the password with the future account's name and address.
            future = get_user_model()(username=self.invitation.email, email=self.invitation.email)
            try:
                password_validation.validate_password(first, future)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


# The token is a URL segment: the site's Referrer-Policy (same-origin) keeps it from other sites, and the page loads
# only local assets.
@never_cache
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def invitation_accept_view(request: HttpRequest, invitation_id: str, token: str) -> HttpResponse:
    tenant = getattr(connection, "tenant", None)
    try:
        invitation = invitation_check(invitation_id=invitation_id, token=token)
    except InvitationInvalid as exc:
        status = 404 if exc.reason == "unknown" else 410
        return render(request, "access/invitation_invalid.html",
                      {"message": exc.message, "reason": exc.reason, "tenant": tenant}, status=status)
    form = ChoosePasswordForm(request.POST or None, invitation=invitation)
    if request.method == "POST" and form.is_valid():
        try:
            invitation_accept(invitation_id=invitation.pk, token=token, password=form.cleaned_data["password1"],
                              request=request)
        except InvitationInvalid as exc:
            return render(request, "access/invitation_invalid.html",
                          {"message": exc.message, "reason": exc.reason, "tenant": tenant}, status=410)
        messages.success(request, "Your password is set. Sign in with your e-mail address and this password.")
        return redirect(f"{reverse('login')}?next={'/admin/' if invitation.staff else '/chat/'}")
    return render(request, "access/invitation_accept.html",
                  {"form": form, "invitation": invitation, "tenant": tenant, "sso": oidc_config_enabled()})

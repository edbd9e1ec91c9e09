"""The tenant site's invitations: invite by e-mail with roles, re-send, revoke (services in access/invitations.py).

Inviting is the way people join; the administrator never types anyone's password. Who may invite is who may add
users (auth.add_user, held by the seeded `admin` role); the roles offered are those the inviter could grant itself.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from access.admin_users import grantable_groups
from access.invitations import InvitationRefused, invitation_create, invitation_resend, invitation_revoke
from access.models import Invitation
from access.roles_described import role_summary
from config.admin_mixins import TenantSiteMixin
from config.admin_sites import tenant_site


class RoleChoiceField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]  # not subscriptable at run time
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name}: {role_summary(obj)}"


class InvitationForm(forms.ModelForm):  # type: ignore[type-arg]
    roles = RoleChoiceField(queryset=Group.objects.none(), required=False, widget=forms.CheckboxSelectMultiple,
                            help_text="What the new member may do. Roles managed by SSO's group mapping are set "
                                      "again from the identity provider at each SSO sign-in.")

    class Meta:
        model = Invitation
        fields = ["email", "roles", "staff"]
        help_texts = {"email": "The invitation is mailed here; the address becomes the member's user name.",
                      "staff": "Lets the member open this admin workspace (what it may change there still "
                               "depends on its roles)."}

    def clean_email(self) -> str:
        from django.contrib.auth import get_user_model

        email: str = get_user_model().objects.normalize_email((self.cleaned_data.get("email") or "").strip())
        if get_user_model().objects.filter(Q(username__iexact=email) | Q(email__iexact=email)).exists():
            raise forms.ValidationError("Someone in this organisation already uses this address.")
        if Invitation.objects.filter(email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True,
                                     expires_at__gt=timezone.now()).exists():
            raise forms.ValidationError("This address already has an invitation waiting: re-send it from the list.")
        return email


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(s.value, s.label) for s in Invitation.Status]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> QuerySet[Invitation]:
        now = timezone.now()
        value = self.value()
        if value == Invitation.Status.ACCEPTED:
            return queryset.filter(accepted_at__isnull=False)
        if value == Invitation.Status.REVOKED:
            return queryset.filter(accepted_at__isnull=True, revoked_at__isnull=False)
        if value == Invitation.Status.EXPIRED:
            return queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__lte=now)
        if value == Invitation.Status.PENDING:
            return queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)
        return queryset


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


@admin.register(Invitation, site=tenant_site)
class InvitationAdmin(TenantSiteMixin):
    form = InvitationForm
    list_display = ["email", "role_names", "staff", "status_badge", "invited_by", "sent_at", "expires_at"]
    list_filter = [StatusFilter, "staff", "roles"]
    search_fields = ["email"]
    actions = ["resend_selected", "revoke_selected"]
    change_form_template = "admin/access/invitation/change_form.html"

    # Invitations are how users are added: the user permissions decide, not a separate set of codenames.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.host_ok(request) and request.user.has_perm("auth.view_user")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.host_ok(request) and request.user.has_perm("auth.view_user")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.host_ok(request) and request.user.has_perm("auth.add_user")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # an invitation is re-sent or revoked, never edited

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked invitations stay listed

    def may_manage(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invitation]:
        return super().get_queryset(request).select_related("invited_by").prefetch_related("roles")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["email", "roles", "staff"]
        return ["email", "role_names", "staff", "status_badge", "invited_by", "created_at", "sent_at", "expires_at",
                "accepted_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else self.get_fields(request, obj)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and "roles" in form.base_fields:
            form.base_fields["roles"].queryset = grantable_groups(request.user)  # type: ignore[attr-defined]
        return form

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        if not self.may_manage(request):
            actions.pop("resend_selected", None)
            actions.pop("revoke_selected", None)
        return actions

    @admin.display(description="roles")
    def role_names(self, obj: Invitation) -> str:
        return ", ".join(sorted(g.name for g in obj.roles.all())) or "—"

    @admin.display(description="status")
    def status_badge(self, obj: Invitation) -> str:
        status = Invitation.Status(obj.status)
        return format_html('<span class="atrium-badge atrium-badge-{}">{}</span>', status.value, status.label)

    def save_model(self, request: HttpRequest, obj: Invitation, form: Any, change: bool) -> None:
        if change:
            return
        try:
            created = invitation_create(email=form.cleaned_data["email"], roles=list(form.cleaned_data["roles"]),
                                        staff=form.cleaned_data["staff"], invited_by=request.user,
                                        base_url=_base_url(request), request=request)
        except InvitationRefused as exc:
            messages.error(request, str(exc))
            raise PermissionDenied(str(exc)) from exc
        obj.pk = created.pk
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None  # invitation_create set the roles

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None  # the audit entry written by the service is the record

    def response_add(self, request: HttpRequest, obj: Invitation, post_url_continue: str | None = None) -> HttpResponse:
        messages.success(request, f"Invitation sent to {obj.email}. The link is valid until "
                                  f"{timezone.localtime(obj.expires_at):%d %B %Y, %H:%M %Z}.")
        return HttpResponseRedirect(reverse("admin:access_invitation_changelist"))

    def get_urls(self) -> list[Any]:
        extra = [
            path("<uuid:object_id>/resend/", self.admin_site.admin_view(self.resend_view),
                 name="access_invitation_resend"),
            path("<uuid:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view),
                 name="access_invitation_revoke"),
        ]
        return extra + super().get_urls()

    def _one(self, request: HttpRequest, object_id: str) -> Invitation:
        if request.method != "POST":
            raise PermissionDenied
        invitation: Invitation | None = self.get_object(request, str(object_id))
        if invitation is None or not self.may_manage(request):
            raise PermissionDenied
        return invitation

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        invitation = self._one(request, object_id)
        try:
            invitation = invitation_resend(invitation=invitation, by=request.user, base_url=_base_url(request),
                                           request=request)
        except InvitationRefused as exc:
            messages.error(request, str(exc))
        else:
            until = f"{timezone.localtime(invitation.expires_at):%d %B %Y, %H:%M %Z}"
            messages.success(request, f"Invitation sent again to {invitation.email}; the previous link no longer "
                                      f"works. Valid until {until}.")
        return HttpResponseRedirect(reverse("admin:access_invitation_change", args=[invitation.pk]))

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        invitation = self._one(request, object_id)
        if invitation_revoke(invitation=invitation, by=request.user, request=request):
            messages.success(request, f"Invitation for {invitation.email} revoked: its link no longer works.")
        else:
            messages.error(request, "Only an invitation that was not accepted or revoked can be revoked.")
        return HttpResponseRedirect(reverse("admin:access_invitation_change", args=[invitation.pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"may_manage": self.may_manage(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    @admin.action(description="Send the selected invitations again (new links)")
    def resend_selected(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        sent = 0
        for invitation in queryset:
            try:
                invitation_resend(invitation=invitation, by=request.user, base_url=_base_url(request), request=request)
                sent += 1
            except InvitationRefused:
                continue
        messages.success(request, f"Sent {sent} invitation(s) again.")

    @admin.action(description="Revoke the selected invitations")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        count = sum(invitation_revoke(invitation=i, by=request.user, request=request) for i in queryset)
        messages.success(request, f"Revoked {count} invitation(s).")

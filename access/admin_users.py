"""The tenant site's user and role admins: nobody becomes superuser, nobody grants what they do not hold.

A tenant's administrator holds explicit permissions (its roles), never `is_superuser`. These admins only offer the
permissions and roles made of permissions the editing user holds itself; Django's form fields refuse any other id
sent by a hand-made POST ("Select a valid choice"), and memberships or permissions the editor could not have
granted are kept as they were instead of being silently dropped. Every change is audited in the tenant's trail
with the real actor, in the transaction of the change.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from access.audit_hooks import access_audit
from access.roles_described import grouped_choices, role_summary
from config.admin_mixins import TenantSiteMixin
from config.admin_sites import tenant_site


def _tenant_app_labels() -> set[str]:
    labels = set()
    for name in settings.TENANT_APPS:
        for config in apps.get_app_configs():
            if config.name == name:
                labels.add(config.label)
    return labels - {"contenttypes", "sessions", "admin", "messages"}


def grantable_permissions(user: Any) -> QuerySet[Permission]:
    """The permissions `user` may grant: those it holds itself, of the tenant's own apps only."""
    held = user.get_all_permissions() if user.is_active else set()
    labels = _tenant_app_labels()
    query = Q(pk__in=[])
    for name in held:
        app_label, codename = name.split(".", 1)
        if app_label in labels:
            query |= Q(content_type__app_label=app_label, codename=codename)
    return Permission.objects.filter(query).select_related("content_type")


def grantable_groups(user: Any) -> QuerySet[Group]:
    """Roles whose every permission `user` holds."""
    allowed = set(grantable_permissions(user).values_list("pk", flat=True))
    ids = [g.pk for g in Group.objects.prefetch_related("permissions")
           if {p.pk for p in g.permissions.all()} <= allowed]
    return Group.objects.filter(pk__in=ids).order_by("name")


def _permission_names(permissions: Any) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in permissions.select_related("content_type")}


class TenantGroupAdmin(TenantSiteMixin, GroupAdmin):
    # What a role allows, in sentences grouped by topic (access/roles_described.py), not a two-list codename picker.
    filter_horizontal = ()
    list_display = ("name", "allows", "member_count")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Group]:
        queryset: QuerySet[Group] = super().get_queryset(request)
        return queryset.prefetch_related("permissions__content_type").annotate(members=Count("user", distinct=True))

    @admin.display(description="what it allows")
    def allows(self, obj: Group) -> str:
        return role_summary(obj)

    @admin.display(description="members", ordering="members")
    def member_count(self, obj: Any) -> int:
        return int(getattr(obj, "members", 0))

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest | None = None, **kwargs: Any) -> Any:
        if db_field.name == "permissions" and request is not None:
            kwargs["queryset"] = grantable_permissions(request.user)
            kwargs["widget"] = forms.CheckboxSelectMultiple(attrs={"class": "atrium-permission-choices"})
            field = super().formfield_for_manytomany(db_field, request, **kwargs)
            assert field is not None
            field.label = "What members with this role may do"
            field.help_text = ("Only what you may do yourself is offered. A member with several roles may do "
                               "everything any of them allows.")
            field.choices = grouped_choices(kwargs["queryset"])
            return field
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        group = form.instance
        before_all = set(group.permissions.all()) if change else set()
        grantable = set(grantable_permissions(request.user))
        before = _permission_names(group.permissions) if change else set()
        super().save_related(request, form, formsets, change)
        kept = before_all - grantable  # the editor could neither grant nor revoke these
        if kept:
            group.permissions.add(*kept)
        after = _permission_names(group.permissions)
        if before != after or not change:
            access_audit("role_change", user=request.user, request=request,
                         metadata={"source": "admin", "role": group.name, "created": not change,
                                   "permissions_added": sorted(after - before),
                                   "permissions_removed": sorted(before - after)})

    def delete_model(self, request: HttpRequest, obj: Group) -> None:
        access_audit("role_change", user=request.user, request=request,
                     metadata={"source": "admin", "role": obj.name, "deleted": True})
        super().delete_model(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a role takes its permissions from its members: only for roles the editor could have granted.
        if obj is not None and not set(obj.permissions.all()) <= set(grantable_permissions(request.user)):
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Group]) -> None:
        for group in queryset:
            self.delete_model(request, group)


USER_FLAGS = ("is_active", "is_staff")


class RoleFilter(admin.RelatedFieldListFilter):
    @property
    def title(self) -> str:
        return "role"

    @title.setter
    def title(self, value: str) -> None:
        pass


class SignInFilter(admin.SimpleListFilter):
    title = "signs in with"
    parameter_name = "signin"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("sso", "single sign-on"), ("password", "password")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "sso":
            return queryset.filter(identities__isnull=False).distinct()
        if self.value() == "password":
            return queryset.filter(identities__isnull=True)
        return queryset


class TenantUserAdmin(TenantSiteMixin, UserAdmin):  # type: ignore[type-arg]  # not subscriptable at run time
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    list_display = ("username", "full_name", "email", "role_names", "signs_in_with", "is_staff", "is_active",
                    "last_login")
    list_filter = (("groups", RoleFilter), "is_staff", "is_active", SignInFilter)
    readonly_fields = ("last_login", "date_joined")
    change_list_template = "admin/auth/user/tenant_change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).prefetch_related("groups", "identities")

    @admin.display(description="name", ordering="last_name")
    def full_name(self, obj: Any) -> str:
        return str(obj.get_full_name() or "—")

    @admin.display(description="roles")
    def role_names(self, obj: Any) -> str:
        return ", ".join(sorted(g.name for g in obj.groups.all())) or "—"

    @admin.display(description="signs in with")
    def signs_in_with(self, obj: Any) -> str:
        if obj.identities.all():
            return "single sign-on"
        return "password" if obj.has_usable_password() else "—"

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        # People join by invitation: the administrator never chooses someone else's password.
        from django.shortcuts import redirect

        return redirect("admin:access_invitation_add")

    def formfield_for_manytomany(self, db_field: Any, request: Any = None, **kwargs: Any) -> Any:
        if request is None:
            pass
        elif db_field.name == "user_permissions":
            kwargs["queryset"] = grantable_permissions(request.user)
        elif db_field.name == "groups":
            kwargs["queryset"] = grantable_groups(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Editing someone who holds more than the editor (password, flags, roles) would be a way around the rule.
        if obj is not None and obj.pk != request.user.pk and not self._within_reach(request, obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and (obj.pk == request.user.pk or not self._within_reach(request, obj)):
            return False
        return super().has_delete_permission(request, obj)

    @staticmethod
    def _within_reach(request: HttpRequest, obj: Any) -> bool:
        mine: Any = request.user
        return bool(set(obj.get_all_permissions()) <= set(mine.get_all_permissions()))

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.is_superuser = False  # never in a tenant (the database refuses it too)
        self._flags_before = {} if not change else dict(
            get_user_model().objects.filter(pk=obj.pk).values(*USER_FLAGS).first() or {})
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        user = form.instance
        groups_before = set(user.groups.all()) if change else set()
        perms_before = set(user.user_permissions.all()) if change else set()
        super().save_related(request, form, formsets, change)
        kept_groups = groups_before - set(grantable_groups(request.user))
        kept_perms = perms_before - set(grantable_permissions(request.user))
        if kept_groups:
            user.groups.add(*kept_groups)
        if kept_perms:
            user.user_permissions.add(*kept_perms)
        groups_after = set(user.groups.all())
        perms_after = set(user.user_permissions.all())
        flags_before = getattr(self, "_flags_before", {})
        flags = {f: getattr(user, f) for f in USER_FLAGS if not change or flags_before.get(f) != getattr(user, f)}
        metadata: dict[str, Any] = {"source": "admin", "created": not change}
        if groups_before != groups_after:
            metadata["added"] = sorted(g.name for g in groups_after - groups_before)
            metadata["removed"] = sorted(g.name for g in groups_before - groups_after)
        if perms_before != perms_after:
            metadata["permissions_added"] = sorted(_names(perms_after - perms_before))
            metadata["permissions_removed"] = sorted(_names(perms_before - perms_after))
        if flags:
            metadata["flags"] = flags
        changed_fields = sorted(set(form.changed_data) - {"groups", "user_permissions", *USER_FLAGS})
        if changed_fields:
            metadata["fields"] = changed_fields
        if len(metadata) > 2 or not change:
            event = "role_change" if ("added" in metadata or "removed" in metadata
                                      or "permissions_added" in metadata or "flags" in metadata) else "user_change"
            access_audit(event, user=request.user, request=request, metadata=metadata, subject_id=user.pk)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        access_audit("user_change", user=request.user, request=request,
                     metadata={"source": "admin", "deleted": True}, subject_id=obj.pk)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for user in queryset:
            self.delete_model(request, user)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        """Someone else's password is never typed by an administrator: it mails them a link to choose one (the
        first administrator's invitation link, tenants.services.tenant_invite_link). One's own password: Django's
        form."""
        from django.contrib.admin.utils import unquote
        from django.core.exceptions import PermissionDenied
        from django.http import Http404, HttpResponseRedirect
        from django.template.response import TemplateResponse
        from django.urls import reverse

        target = self.get_object(request, unquote(id))
        if not self.has_change_permission(request, target):
            raise PermissionDenied
        if target is None:
            raise Http404
        if target.pk != request.user.pk:
            if request.method == "POST":
                from access.invitations import member_password_link_send

                if member_password_link_send(user=target, by=request.user, base_url=request.build_absolute_uri("/"),
                                             request=request):
                    self.message_user(request, f"A link to choose a new password was mailed to {target.email}.")
                else:
                    self.message_user(request, "This member has no e-mail address: add one first.",
                                      level="error")
                return HttpResponseRedirect(reverse("admin:auth_user_change", args=[target.pk]))
            context = {**self.admin_site.each_context(request), "opts": self.opts, "original": target,
                       "title": f"Send {target.get_username()} a link to choose a new password?"}
            return TemplateResponse(request, "admin/auth/user/password_link.html", context)
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            access_audit("user_change", user=request.user, request=request,
                         metadata={"source": "admin", "fields": ["password"]}, subject_id=int(id))
        return response


def _names(permissions: set[Permission]) -> list[str]:
    return [f"{p.content_type.app_label}.{p.codename}" for p in permissions]


for _model, _admin_class in ((Group, TenantGroupAdmin), (get_user_model(), TenantUserAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)  # django.contrib.auth put them on the default site, which is mounted nowhere
    tenant_site.register(_model, _admin_class)

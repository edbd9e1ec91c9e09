"""The tenant admin workspace's overview page: members, invitations, sign-in, roles and the policy that applies.

Reads only (a selector): each figure links to the page where it is managed, and only pages the viewer may open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from access.models import Invitation, OIDCConfig
from access.roles_described import role_summary


@dataclass
class PolicyLine:
    label: str
    value: str
    owner: str  # "platform", "organisation" or "both"


@dataclass
class Overview:
    members: int
    staff: int
    inactive: int
    invitations_waiting: int
    invitations_expired: int
    sso_state: str  # "off", "untested", "tested", "enabled"
    sso_name: str
    roles: list[tuple[str, str, int]]
    policy: list[PolicyLine] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)


def _limit(value: int | None, unit: str) -> str:
    return "no limit" if value is None else f"{value:,} {unit}"


def _policy(tenant: Any) -> list[PolicyLine]:
    platform_models = ", ".join(tenant.allowed_models or []) or "all models"
    own_models = ", ".join(tenant.own_allowed_models or [])
    lines = [
        PolicyLine("Models", f"{platform_models}" + (f", narrowed here to {own_models}" if own_models else ""),
                   "both" if own_models else "platform"),
        PolicyLine("Longest answer", f"{tenant.effective_max_tokens_per_request:,} tokens per request",
                   "both" if tenant.own_max_tokens_per_request else "platform"),
        PolicyLine("Organisation", f"{_limit(tenant.requests_per_minute, 'requests per minute')}; "
                                   f"{_limit(tenant.tokens_per_day, 'tokens per day')}", "platform"),
        PolicyLine("Each member", f"{_limit(tenant.effective_user_requests_per_minute, 'requests per minute')}; "
                                  f"{_limit(tenant.effective_user_tokens_per_day, 'tokens per day')}",
                   "both" if (tenant.own_user_requests_per_minute or tenant.own_user_tokens_per_day) else "platform"),
        PolicyLine("Conversations kept", f"{tenant.retention_days} days", "platform"),
        PolicyLine("Second factor for admins", "required" if getattr(tenant, "mfa_required_for_admins", True)
                   else "not required", "platform"),
    ]
    return lines


def workspace_overview(request: HttpRequest) -> Overview:
    user: Any = request.user
    tenant = getattr(request, "tenant", None)
    users = get_user_model().objects.all()
    now = timezone.now()
    open_invitations = Invitation.objects.filter(accepted_at__isnull=True, revoked_at__isnull=True)
    config = OIDCConfig.objects.filter(pk=1).first()
    if config is None:
        sso_state = "off"
    elif config.enabled:
        sso_state = "enabled"
    else:
        sso_state = "tested" if config.test_current else "untested"
    roles = [(g.name, role_summary(g), g.user_set.count())
             for g in Group.objects.prefetch_related("permissions__content_type").order_by("name")]
    links: dict[str, str] = {}
    if user.has_perm("auth.view_user"):
        links["members"] = reverse("admin:auth_user_changelist")
        links["invitations"] = reverse("admin:access_invitation_changelist")
    if user.has_perm("auth.add_user"):
        links["invite"] = reverse("admin:access_invitation_add")
    if user.has_perm("auth.view_group"):
        links["roles"] = reverse("admin:auth_group_changelist")
    if user.has_perm("access.view_oidcconfig"):
        links["sso"] = (reverse("admin:access_oidcconfig_change", args=[config.pk]) if config is not None
                        else reverse("admin:access_oidcconfig_add"))
    if user.has_perm("access.admin") and tenant is not None:
        links["policy"] = reverse("admin:access_tenantpolicy_change", args=[tenant.pk])
    return Overview(
        members=users.filter(is_active=True).count(),
        staff=users.filter(is_active=True, is_staff=True).count(),
        inactive=users.filter(is_active=False).count(),
        invitations_waiting=open_invitations.filter(expires_at__gt=now).count(),
        invitations_expired=open_invitations.filter(expires_at__lte=now).count(),
        sso_state=sso_state, sso_name=config.display_name if config is not None else "",
        roles=roles, policy=_policy(tenant) if tenant is not None else [], links=links,
    )

"""Roles in plain words: what each permission lets a member do, grouped as a tenant administrator thinks of them.

The role form (access/admin_users.py) shows these sentences as grouped checkboxes instead of permission codenames,
and lists and invitation forms summarise a role with them. A permission not described here (a new model's) falls
back to its model and action ("Change API keys"), so nothing is ever hidden.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission

USING_MODELS = "Using Claude"
OWN_DATA = "Their own data"
PEOPLE = "People and roles"
SIGN_IN = "Single sign-on and API keys"
COMPLIANCE = "Compliance and records"
ADMINISTRATION = "Administration"
OTHER = "Other"

GROUP_ORDER = [USING_MODELS, OWN_DATA, PEOPLE, SIGN_IN, COMPLIANCE, ADMINISTRATION, OTHER]

DESCRIBED: dict[str, tuple[str, str]] = {
    "access.write": (USING_MODELS, "Send messages to Claude (chat and API)"),
    "access.use_haiku": (USING_MODELS, "Use the fast Haiku models"),
    "access.use_sonnet": (USING_MODELS, "Use the balanced Sonnet models"),
    "access.use_opus": (USING_MODELS, "Use the most capable Opus models"),
    "access.use_tools": (USING_MODELS, "Let Claude call tools (requests with tool definitions)"),
    "access.use_vision": (USING_MODELS, "Send images to Claude"),
    "access.high_tokens": (USING_MODELS, "Ask for long answers (more than 4,096 output tokens)"),
    "access.read": (OWN_DATA, "Read their own conversations and usage"),
    "access.admin": (ADMINISTRATION, "Administer the organisation; call models outside the catalog tiers"),
    "auth.view_user": (PEOPLE, "See the members list"),
    "auth.add_user": (PEOPLE, "Invite new members"),
    "auth.change_user": (PEOPLE, "Change members: names, roles, admin access, deactivation"),
    "auth.delete_user": (PEOPLE, "Remove members"),
    "auth.view_group": (PEOPLE, "See the roles"),
    "auth.add_group": (PEOPLE, "Create roles"),
    "auth.change_group": (PEOPLE, "Change what a role allows"),
    "auth.delete_group": (PEOPLE, "Delete roles"),
    "access.view_oidcconfig": (SIGN_IN, "See the single sign-on settings"),
    "access.add_oidcconfig": (SIGN_IN, "Set up single sign-on"),
    "access.change_oidcconfig": (SIGN_IN, "Change the single sign-on settings"),
    "access.delete_oidcconfig": (SIGN_IN, "Remove single sign-on"),
    "access.view_oidcgroupmapping": (SIGN_IN, "See which identity-provider groups grant which roles"),
    "access.add_oidcgroupmapping": (SIGN_IN, "Map identity-provider groups to roles"),
    "access.change_oidcgroupmapping": (SIGN_IN, "Change group → role mappings"),
    "access.delete_oidcgroupmapping": (SIGN_IN, "Remove group → role mappings"),
    "access.view_useridentity": (SIGN_IN, "See members' single sign-on identities"),
    "access.view_apikey": (SIGN_IN, "See everyone's API keys (never the secrets)"),
    "access.add_apikey": (SIGN_IN, "Create API keys for members"),
    "access.change_apikey": (SIGN_IN, "Revoke members' API keys"),
    "access.delete_apikey": (SIGN_IN, "Delete API keys"),
    "audit.view_audit": (COMPLIANCE, "Read the audit log in the compliance console"),
    "audit.export_data": (COMPLIANCE, "Export a person's data (GDPR access requests)"),
    "audit.delete_data": (COMPLIANCE, "Erase a person's data (GDPR deletion requests)"),
    "audit.view_auditentry": (COMPLIANCE, "See audit entries in this workspace"),
    "audit.view_consent": (COMPLIANCE, "See who accepted the processing notice"),
    "audit.view_processingnotice": (COMPLIANCE, "See the processing notice versions"),
    "audit.view_gdprjob": (COMPLIANCE, "See data export and deletion jobs"),
    "audit.view_deletionreceipt": (COMPLIANCE, "See deletion receipts"),
    "inference.view_usagedaily": (ADMINISTRATION, "See the organisation's usage"),
}

_ACTIONS = {"view": "See", "add": "Add", "change": "Change", "delete": "Delete"}


def permission_key(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def describe(permission: Permission) -> tuple[str, str]:
    """(group, sentence) for one permission."""
    known = DESCRIBED.get(permission_key(permission))
    if known is not None:
        return known
    action, _, _model = permission.codename.partition("_")
    if action in _ACTIONS:
        model = permission.content_type.model_class()
        noun = str(model._meta.verbose_name_plural) if model is not None else _model
        return OTHER, f"{_ACTIONS[action]} {noun}"
    return OTHER, str(permission.name)


def grouped_choices(permissions: Any) -> list[tuple[str, list[tuple[int, str]]]]:
    """Choices for a grouped checkbox list: [(group, [(pk, sentence), …]), …] in a stable, meaningful order."""
    groups: dict[str, list[tuple[int, str, int]]] = {}
    order = {key: i for i, key in enumerate(DESCRIBED)}
    for permission in permissions:
        group, sentence = describe(permission)
        groups.setdefault(group, []).append(
            (permission.pk, sentence, order.get(permission_key(permission), len(order))))
    return [(group, [(pk, sentence) for pk, sentence, _ in sorted(groups[group], key=lambda c: (c[2], c[1]))])
            for group in GROUP_ORDER if group in groups]


def role_summary(group: Any) -> str:
    """One line saying what a role allows, from its permissions (for lists and the invitation form)."""
    keys = {permission_key(p) for p in group.permissions.all()}
    parts: list[str] = []
    tiers = [name for key, name in (("access.use_haiku", "Haiku"), ("access.use_sonnet", "Sonnet"),
                                    ("access.use_opus", "Opus")) if key in keys]
    if "access.write" in keys:
        extras = [word for key, word in (("access.use_tools", "tools"), ("access.use_vision", "images"),
                                         ("access.high_tokens", "long answers")) if key in keys]
        parts.append("chats with " + (", ".join(tiers) if tiers else "no model tier")
                     + (f" (+ {', '.join(extras)})" if extras else ""))
    elif "access.read" in keys:
        parts.append("reads own conversations")
    if any(k.startswith("auth.") or k == "access.admin" for k in keys):
        parts.append("administers the organisation")
    if any(k in keys for k in ("audit.view_audit", "audit.export_data", "audit.delete_data")):
        parts.append("compliance console")
    return "; ".join(parts) or "nothing yet"

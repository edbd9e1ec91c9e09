"""The seeded roles (the seed's four plus compliance_officer) and their permissions.

Roles are Django Groups in each tenant's schema and stay editable in the tenant's admin;
seeding only creates what is missing, so an admin's edits survive re-seeding.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

ACCESS_PERMISSIONS = [
    "read", "write", "use_opus", "use_sonnet", "use_haiku", "use_tools", "use_vision", "high_tokens", "admin",
]
COMPLIANCE_PERMISSIONS = ["audit.export_data", "audit.delete_data", "audit.view_audit"]

# What a tenant's administrator needs on the tenant admin site, as explicit model permissions (no tenant user is
# ever a superuser). Audit records, consents, jobs and usage are read-only to everybody.
ADMIN_SITE_PERMISSIONS = [
    *(f"auth.{action}_{model}" for model in ("user", "group") for action in ("view", "add", "change", "delete")),
    *(f"access.{action}_{model}" for model in ("oidcconfig", "oidcgroupmapping")
      for action in ("view", "add", "change", "delete")),
    "access.view_useridentity", "access.view_apikey", "access.add_apikey", "access.change_apikey",
    "audit.view_auditentry", "audit.view_consent", "audit.view_processingnotice", "audit.view_gdprjob",
    "audit.view_deletionreceipt", "inference.view_usagedaily",
    *(f"access.{action}_budget" for action in ("view", "add", "change", "delete")), "access.view_budgetalert",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    "viewer": ["access.read"],
    "basic_user": ["access.read", "access.write", "access.use_haiku", "access.use_sonnet"],
    "power_user": [
        "access.read", "access.write", "access.use_haiku", "access.use_sonnet", "access.use_opus",
        "access.use_tools", "access.use_vision", "access.high_tokens",
    ],
    "admin": [f"access.{p}" for p in ACCESS_PERMISSIONS] + COMPLIANCE_PERMISSIONS + ADMIN_SITE_PERMISSIONS,
    "compliance_officer": ["access.read", *COMPLIANCE_PERMISSIONS],
}


def _permissions(names: list[str]) -> list[Permission]:
    query = Q()
    for name in names:
        app_label, codename = name.split(".", 1)
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.filter(query))
    if len(found) != len(names):
        have = {f"{p.content_type.app_label}.{p.codename}" for p in found}
        missing = sorted(set(names) - have)
        raise LookupError(f"permissions missing from this schema: {', '.join(missing)}")
    return found


def roles_seed() -> None:
    """Create any missing role with its default permissions, in the current schema. Idempotent."""
    for role, names in ROLE_PERMISSIONS.items():
        group, created = Group.objects.get_or_create(name=role)
        if created:
            group.permissions.set(_permissions(names))


def roles_seed_receiver(sender: Any, schema_name: str, **kwargs: Any) -> None:
    roles_seed()

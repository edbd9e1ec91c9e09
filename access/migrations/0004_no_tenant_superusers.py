"""No tenant user is a superuser: convert the existing ones and let the database refuse new ones.

Runs in tenant schemas only (access is a tenant app). A former superuser keeps administering its tenant through the
`admin` role, which gains the admin site's model permissions (access.roles.ADMIN_SITE_PERMISSIONS) and is created if
an operator had deleted it. Platform superusers live in the public schema and are not touched.

Self-contained: the permission names are written out here as access.roles had them when this migration was made,
so a later change to the roles cannot change what this historical step does.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

ADMIN_PERMISSIONS = [
    "access.read", "access.write", "access.use_opus", "access.use_sonnet", "access.use_haiku", "access.use_tools",
    "access.use_vision", "access.high_tokens", "access.admin",
    "audit.export_data", "audit.delete_data", "audit.view_audit",
    "auth.view_user", "auth.add_user", "auth.change_user", "auth.delete_user",
    "auth.view_group", "auth.add_group", "auth.change_group", "auth.delete_group",
    "access.view_oidcconfig", "access.add_oidcconfig", "access.change_oidcconfig", "access.delete_oidcconfig",
    "access.view_oidcgroupmapping", "access.add_oidcgroupmapping", "access.change_oidcgroupmapping",
    "access.delete_oidcgroupmapping",
    "access.view_useridentity", "access.view_apikey", "access.add_apikey", "access.change_apikey",
    "audit.view_auditentry", "audit.view_consent", "audit.view_processingnotice", "audit.view_gdprjob",
    "audit.view_deletionreceipt", "inference.view_usagedaily",
]


def _ensure_permissions(apps: Any) -> None:
    from django.contrib.auth.management import create_permissions

    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None


def convert(apps: Any, schema_editor: Any) -> None:
    _ensure_permissions(apps)
    user_model = apps.get_model("auth", "User")
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    wanted = []
    for name in ADMIN_PERMISSIONS:
        app_label, codename = name.split(".", 1)
        found = permission_model.objects.filter(content_type__app_label=app_label, codename=codename).first()
        if found is not None:
            wanted.append(found)
    admins = list(user_model.objects.filter(is_superuser=True))
    group = group_model.objects.filter(name="admin").first()
    if group is None and admins:
        group = group_model.objects.create(name="admin")
    if group is not None:
        group.permissions.add(*wanted)
    for user in admins:
        user.is_superuser = False
        user.is_staff = True
        user.save(update_fields=["is_superuser", "is_staff"])
        user.groups.add(group)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0003_cache_invalidation"),
        ("audit", "0005_cache_invalidation"),
        ("inference", "0002_usage_names"),
    ]
    operations = [
        migrations.RunPython(convert, migrations.RunPython.noop),
        migrations.RunSQL(
            "ALTER TABLE auth_user ADD CONSTRAINT auth_user_no_tenant_superuser CHECK (NOT is_superuser);",
            "ALTER TABLE auth_user DROP CONSTRAINT IF EXISTS auth_user_no_tenant_superuser;",
        ),
    ]

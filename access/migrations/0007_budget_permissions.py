"""Give the seeded `admin` role of existing tenants the budget permissions (new tenants get them when seeded).

Self-contained: the permission names are written out here, and the permission rows are created if the
post-migrate signal has not made them yet."""

from django.db import migrations

PERMISSIONS = [
    ("budget", "view_budget", "Can view budget"),
    ("budget", "add_budget", "Can add budget"),
    ("budget", "change_budget", "Can change budget"),
    ("budget", "delete_budget", "Can delete budget"),
    ("budgetalert", "view_budgetalert", "Can view budget alert"),
]


def grant(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    admin = Group.objects.filter(name="admin").first()
    for model, codename, name in PERMISSIONS:
        content_type, _ = ContentType.objects.get_or_create(app_label="access", model=model)
        permission, _ = Permission.objects.get_or_create(content_type=content_type, codename=codename,
                                                         defaults={"name": name})
        if admin is not None:
            admin.permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [("access", "0006_budgets"), ("auth", "0012_alter_user_first_name_max_length"),
                    ("contenttypes", "0002_remove_content_type_name")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]

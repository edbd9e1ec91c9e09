"""Statement triggers that tell every process to forget its cached API keys, users and permissions
(config/tenant_cache.py). A key's last-use timestamp and a user's last login are not announced: they change
often and no cached decision depends on them."""

from django.db import migrations

from config.tenant_cache import notify_trigger_sql

TABLES: list[tuple[str, list[str] | None]] = [
    ("access_apikey", ["prefix", "secret_hash", "user_id", "revoked_at", "expires_at"]),
    ("auth_user", ["username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser"]),
    ("auth_user_groups", None),
    ("auth_user_user_permissions", None),
    ("auth_group_permissions", None),
    ("auth_permission", None),
]


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0002_sso_identities_api_keys"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [migrations.RunSQL(*notify_trigger_sql(table, columns)) for table, columns in TABLES]

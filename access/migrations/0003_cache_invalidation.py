"""Statement triggers that tell every process to forget its cached API keys, users and permissions
(config/tenant_cache.py). A key's last-use timestamp and a user's last login are not announced: they change
often and no cached decision depends on them.

Self-contained: the SQL is written out here, as it was when this migration was made, so a later change to
config/tenant_cache.py cannot change what this historical step does.
"""

from django.db import migrations

NOTIFY_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION atrium_cache_notify() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('atrium_cache', TG_TABLE_SCHEMA);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

# (table, the UPDATE OF clause): which statements announce a change.
TRIGGERS = [
    ("access_apikey", "UPDATE OF prefix, secret_hash, user_id, revoked_at, expires_at"),
    ("auth_user", "UPDATE OF username, first_name, last_name, email, is_active, is_staff, is_superuser"),
    ("auth_user_groups", "UPDATE"),
    ("auth_user_user_permissions", "UPDATE"),
    ("auth_group_permissions", "UPDATE"),
    ("auth_permission", "UPDATE"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0002_sso_identities_api_keys"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [
        migrations.RunSQL(
            f"{NOTIFY_FUNCTION_SQL}\nCREATE TRIGGER {table}_atrium_cache AFTER INSERT OR {update} OR DELETE OR "
            f"TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION atrium_cache_notify();",
            f"DROP TRIGGER IF EXISTS {table}_atrium_cache ON {table};",
        )
        for table, update in TRIGGERS
    ]

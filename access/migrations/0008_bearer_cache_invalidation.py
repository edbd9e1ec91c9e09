"""Statement triggers that also empty the bearer-token cache (access.authentication, config/tenant_cache.py) when
the tenant's SSO configuration or a user's IdP identity changes: a disabled SSO, another issuer or audience, or an
unlinked identity applies to the next call. An identity's last login and email are not announced (no cached
decision depends on them).

Self-contained: the SQL is written out here, as it was when this migration was made.
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
    ("access_oidcconfig", "UPDATE"),
    ("access_useridentity", "UPDATE OF user_id, issuer, subject"),
]


class Migration(migrations.Migration):
    dependencies = [("access", "0007_budget_permissions")]
    operations = [
        migrations.RunSQL(
            f"{NOTIFY_FUNCTION_SQL}\nCREATE TRIGGER {table}_atrium_cache AFTER INSERT OR {update} OR DELETE OR "
            f"TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION atrium_cache_notify();",
            f"DROP TRIGGER IF EXISTS {table}_atrium_cache ON {table};",
        )
        for table, update in TRIGGERS
    ]

"""Statement triggers that tell every process to forget its cached host -> tenant lookups at once when a tenant
or a domain changes (config/tenant_cache.py, config/middleware.py).

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


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [
        migrations.RunSQL(
            NOTIFY_FUNCTION_SQL + "\nCREATE TRIGGER tenants_tenant_atrium_cache AFTER INSERT OR UPDATE OR DELETE "
            "OR TRUNCATE ON tenants_tenant FOR EACH STATEMENT EXECUTE FUNCTION atrium_cache_notify();",
            "DROP TRIGGER IF EXISTS tenants_tenant_atrium_cache ON tenants_tenant;",
        ),
        migrations.RunSQL(
            NOTIFY_FUNCTION_SQL + "\nCREATE TRIGGER tenants_domain_atrium_cache AFTER INSERT OR UPDATE OR DELETE "
            "OR TRUNCATE ON tenants_domain FOR EACH STATEMENT EXECUTE FUNCTION atrium_cache_notify();",
            "DROP TRIGGER IF EXISTS tenants_domain_atrium_cache ON tenants_domain;",
        ),
    ]

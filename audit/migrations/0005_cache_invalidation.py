"""Statement triggers that tell every process to forget its cached consent decisions (config/tenant_cache.py).

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
    dependencies = [("audit", "0004_lock_head_function")]
    operations = [
        migrations.RunSQL(
            NOTIFY_FUNCTION_SQL + "\nCREATE TRIGGER audit_consent_atrium_cache AFTER INSERT OR UPDATE OR DELETE "
            "OR TRUNCATE ON audit_consent FOR EACH STATEMENT EXECUTE FUNCTION atrium_cache_notify();",
            "DROP TRIGGER IF EXISTS audit_consent_atrium_cache ON audit_consent;",
        ),
        migrations.RunSQL(
            NOTIFY_FUNCTION_SQL + "\nCREATE TRIGGER audit_processingnotice_atrium_cache AFTER INSERT OR UPDATE OR "
            "DELETE OR TRUNCATE ON audit_processingnotice FOR EACH STATEMENT EXECUTE FUNCTION atrium_cache_notify();",
            "DROP TRIGGER IF EXISTS audit_processingnotice_atrium_cache ON audit_processingnotice;",
        ),
    ]

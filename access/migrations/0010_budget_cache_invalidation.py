"""A statement trigger that empties the budgets' per-process cache (access.budgets, config/tenant_cache.py) when a
budget is added, changed, deactivated or deleted: the next call in every process checks the new limits. A
user's name (the budget's label) and a key's revocation are announced by the triggers of 0003.

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


class Migration(migrations.Migration):
    dependencies = [("access", "0009_admin_workspace")]
    operations = [
        migrations.RunSQL(
            f"{NOTIFY_FUNCTION_SQL}\nCREATE TRIGGER access_budget_atrium_cache AFTER INSERT OR UPDATE OR DELETE OR "
            "TRUNCATE ON access_budget FOR EACH STATEMENT EXECUTE FUNCTION atrium_cache_notify();",
            "DROP TRIGGER IF EXISTS access_budget_atrium_cache ON access_budget;",
        ),
    ]

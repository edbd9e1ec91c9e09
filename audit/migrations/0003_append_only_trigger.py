"""The database itself refuses to change or delete audit entries.

The one UPDATE allowed is a GDPR redaction: it may only blank the personal columns (user_id, personal) and set
redacted_at; every chained column must stay as it was. DELETE is refused. (A superuser can still disable the
trigger; that is what the hash chain and `verify_audit` are for.)
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION atrium_audit_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'audit entries are append-only (DELETE refused)';
  END IF;
  IF (to_jsonb(NEW) - ARRAY['user_id', 'personal', 'redacted_at'])
       IS DISTINCT FROM (to_jsonb(OLD) - ARRAY['user_id', 'personal', 'redacted_at'])
     OR NEW.user_id IS NOT NULL OR NEW.personal <> '{}'::jsonb OR NEW.redacted_at IS NULL THEN
    RAISE EXCEPTION 'audit entries are append-only (only a GDPR redaction may blank personal columns)';
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_auditentry
  FOR EACH ROW EXECUTE FUNCTION atrium_audit_append_only();
"""

BACKWARD = "DROP TRIGGER IF EXISTS audit_append_only ON audit_auditentry;"


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_chain_consent_jobs")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]

"""One round trip to take the chain's append lock and read its head (audit.chain.chain_lock_head)."""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION atrium_audit_lock_head(OUT head_seq bigint, OUT head_mac varchar) AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('atrium.audit.' || current_schema()));
  SELECT a.seq, a.mac INTO head_seq, head_mac FROM audit_auditentry a ORDER BY a.seq DESC LIMIT 1;
END;
$$ LANGUAGE plpgsql;
"""

BACKWARD = "DROP FUNCTION IF EXISTS atrium_audit_lock_head();"


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_append_only_trigger")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]

"""Statement triggers that tell every process to forget its cached consent decisions (config/tenant_cache.py)."""

from django.db import migrations

from config.tenant_cache import notify_trigger_sql


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_lock_head_function")]
    operations = [migrations.RunSQL(*notify_trigger_sql(table)) for table in ("audit_consent", "audit_processingnotice")]

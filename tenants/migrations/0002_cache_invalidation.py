"""Statement triggers that tell every process to forget its cached host -> tenant lookups at once when a tenant
or a domain changes (config/tenant_cache.py, config/middleware.py)."""

from django.db import migrations

from config.tenant_cache import notify_trigger_sql


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunSQL(*notify_trigger_sql(table)) for table in ("tenants_tenant", "tenants_domain")]

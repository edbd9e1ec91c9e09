"""Signals other apps use to extend provisioning without tenants importing them."""

from django.dispatch import Signal

# Sent with schema_name=<schema> while the connection is set to that schema, after its tables exist.
# Receivers must be idempotent: it is sent for the template schema and again for each clone.
tenant_provisioned = Signal()

# Sent inside the transaction that saves a tenant's policy or credentials from the public admin, with
# tenant=<Tenant>, fields=[changed policy field names], credentials=[providers whose credentials changed],
# actor=<public admin username>, created=<bool>. The audit app records it in the tenant's own trail.
tenant_policy_changed = Signal()

# Sent inside the transaction of every change to a platform object (tenant, domain, catalog, credentials, beat
# schedule, breaker reset), with actor=<who, e.g. "platform:alice">, action=<e.g. "tenant_create">,
# target=<e.g. "tenant:acme">, tenant_schema=<schema concerned or None>, metadata=<dict, never secret values>.
# The audit app appends it to the platform's hash-chained trail (audit.platform). tenants/platform_audit.py sends it.
platform_object_changed = Signal()

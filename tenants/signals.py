"""Signals other apps use to extend provisioning without tenants importing them."""

from django.dispatch import Signal

# Sent with schema_name=<schema> while the connection is set to that schema, after its tables exist.
# Receivers must be idempotent: it is sent for the template schema and again for each clone.
tenant_provisioned = Signal()

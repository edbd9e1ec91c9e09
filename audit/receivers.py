"""Audit entries for changes other apps make (they send signals; audit records them in the right schema)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django_tenants.utils import tenant_context

from audit.services import audit_record, notice_publish


def tenant_policy_changed(sender: Any, tenant: Any, fields: list[str], credentials: list[str], actor: str,
                          **kwargs: Any) -> None:
    """A platform admin edited this tenant's policy or credentials: record it in the tenant's own trail.

    Runs inside the admin's transaction (same connection), so the edit and its audit entry commit together.
    Credential values never appear: only which providers changed.
    """
    previous = getattr(connection, "tenant", None)
    with tenant_context(tenant):
        if fields:
            audit_record(event_type="policy_change", metadata={"fields": sorted(fields), "by": "platform admin"},
                         personal={"username": actor})
        if credentials:
            audit_record(event_type="credentials_change", metadata={"providers": credentials,
                                                                    "by": "platform admin"},
                         personal={"username": actor})
        if "processing_notice" in fields:
            notice_publish(tenant)
    if previous is not None:
        connection.set_tenant(previous)  # type: ignore[attr-defined]


def platform_object_changed(sender: Any, actor: str, action: str, target: str, tenant_schema: str | None,
                            metadata: dict[str, Any], **kwargs: Any) -> None:
    """A change to a platform object: one entry in the platform's hash-chained trail (public schema), in the
    transaction of the change. audit.platform (the platform trail) switches to the public schema itself."""
    from audit.platform.services import platform_audit_record

    platform_audit_record(actor=actor, action=action, target=target, tenant_schema=tenant_schema,
                          metadata=metadata)


def tenant_provisioned(sender: Any, schema_name: str, **kwargs: Any) -> None:
    """A new tenant's schema exists: publish its first processing notice (if it has one) in that schema."""
    from tenants.models import Tenant

    tenant = Tenant.objects.filter(schema_name=schema_name).first()
    if tenant is not None:  # None for the template schema that new tenants are cloned from
        notice_publish(tenant)

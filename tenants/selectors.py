"""Reads on tenants."""

from __future__ import annotations

from django.db.models import QuerySet

from tenants.models import Tenant


def tenant_list_active() -> QuerySet[Tenant]:
    return Tenant.objects.exclude(schema_name="public").filter(is_active=True).order_by("schema_name")


def tenant_primary_domain(tenant: Tenant) -> str | None:
    domain = tenant.domains.filter(is_primary=True).values_list("domain", flat=True).first()
    return domain

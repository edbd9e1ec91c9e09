"""Audit and compliance data in each tenant's schema."""

from __future__ import annotations

from django.db import models


class ComplianceRights(models.Model):
    """Holder of the compliance permissions; no table."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("export_data", "Request and download any user's GDPR export"),
            ("delete_data", "Request a user's GDPR deletion"),
            ("view_audit", "Read the audit trail and run verification"),
        ]

    def __str__(self) -> str:
        return "compliance rights"

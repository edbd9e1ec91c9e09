"""Retention: every app's retention steps (config/personal_data.py) for one tenant, audited with their counts."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from config.personal_data import retention_steps

if TYPE_CHECKING:

    from tenants.models import Tenant


def retention_run(tenant: Tenant) -> int:
    """Run every registered retention step; audit what they deleted. Returns the conversations deleted."""
    counts: dict[str, int] = {}
    for step in retention_steps():
        for name, value in step.run(tenant).items():
            counts[name] = counts.get(name, 0) + int(value)
    cutoff = timezone.now() - timedelta(days=tenant.retention_days)
    with transaction.atomic():
        audit_record(event_type="retention_run", metadata={"retention_days": tenant.retention_days,
                                                           "cutoff": cutoff.isoformat(), **counts})
    return counts.get("conversations", 0)

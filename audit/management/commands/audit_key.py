"""`manage.py audit_key --tenant SLUG`: print a tenant's audit key, for an auditor's offline verification.

The key proves entries authentic and lets its holder forge them: hand it only to whoever verifies exports
(python -m audit.offline_verify), through your secret channel. Printing it is itself recorded in the platform trail.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from audit.platform.services import platform_audit_record
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Print a tenant's audit key (for verifying its audit exports offline); recorded in the platform trail."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="schema name (slug) of the tenant")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.exclude(schema_name="public").filter(schema_name=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        with transaction.atomic():
            platform_audit_record(actor=f"shell:{getpass.getuser()}", action="audit_key_read",
                                  target=f"tenant:{tenant.schema_name}", tenant_schema=tenant.schema_name)
        self.stdout.write(str(tenant.audit_key))

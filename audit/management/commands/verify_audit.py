"""`manage.py verify_audit [--tenant SLUG]`: verify every tenant's audit chain; exit 1 on the first break."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import tenant_context

from audit.chain import chain_verify
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Verify the hash chain of the audit trail of one tenant or of every tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="schema name (slug) of one tenant; default: every tenant")

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = Tenant.objects.exclude(schema_name="public").order_by("schema_name")
        if options["tenant"]:
            tenants = tenants.filter(schema_name=options["tenant"])
            if not tenants.exists():
                raise CommandError(f"no tenant {options['tenant']!r}")
        broken: list[str] = []
        for tenant in tenants:
            with tenant_context(tenant):
                result = chain_verify()
            line = f"{tenant.schema_name}: {result}"
            if result.ok:
                self.stdout.write(line)
            else:
                self.stderr.write(line)
                broken.append(tenant.schema_name)
        if broken:
            raise CommandError(f"audit chain broken in: {', '.join(broken)}")

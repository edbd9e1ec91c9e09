"""`manage.py verify_audit [--tenant SLUG] [--platform]`: verify audit chains; exit 1 if any is broken."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import tenant_context

from audit.chain import chain_verify
from audit.platform.chain import platform_chain_verify
from audit.verify import VerifyResult
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Verify the hash chain of the audit trail of one tenant, of every tenant, or of the platform."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="schema name (slug) of one tenant; default: every tenant")
        parser.add_argument("--platform", action="store_true",
                            help="verify the platform audit trail (public schema) only")

    def handle(self, *args: Any, **options: Any) -> None:
        broken: list[str] = []
        if options["platform"]:
            if options["tenant"]:
                raise CommandError("give --platform or --tenant, not both")
            self._report("platform", platform_chain_verify(), broken)
        else:
            tenants = Tenant.objects.exclude(schema_name="public").order_by("schema_name")
            if options["tenant"]:
                tenants = tenants.filter(schema_name=options["tenant"])
                if not tenants.exists():
                    raise CommandError(f"no tenant {options['tenant']!r}")
            for tenant in tenants:
                with tenant_context(tenant):
                    result = chain_verify()
                self._report(tenant.schema_name, result, broken)
        if broken:
            raise CommandError(f"audit chain broken in: {', '.join(broken)}")

    def _report(self, name: str, result: VerifyResult, broken: list[str]) -> None:
        if result.ok:
            self.stdout.write(f"{name}: {result}")
            return
        self.stderr.write(f"{name}: BROKEN ({result.entries} entries read, head #{result.head_seq})")
        for finding in result.findings:
            self.stderr.write(f"  {name}: {finding.message}")
        broken.append(name)

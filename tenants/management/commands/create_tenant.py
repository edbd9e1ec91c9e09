"""manage.py create_tenant <slug> --name … [--domain …] [--admin-email …]: provision a tenant."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tenants.platform_audit import platform_change
from tenants.services import TenantExists, tenant_provision


class Command(BaseCommand):
    help = "Create a tenant: its schema, domain, roles and first administrator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Lowercase letters, digits and hyphens, e.g. acme")
        parser.add_argument("--name", required=True, help="Display name, e.g. 'Acme Corp'")
        parser.add_argument("--domain", help="Host the tenant is served on (default <slug>.<ATRIUM_BASE_DOMAIN>)")
        parser.add_argument("--admin-email", help="Creates the first tenant admin with a one-time password")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                result = tenant_provision(
                    slug=options["slug"],
                    name=options["name"],
                    domain=options.get("domain"),
                    admin_email=options.get("admin_email"),
                )
                # The real actor of a command line: the operating-system account that ran it.
                platform_change(actor=f"cli:{getpass.getuser()}", action="tenant_create",
                                target=f"tenant:{result.tenant.schema_name}", tenant_schema=result.tenant.schema_name,
                                metadata={"domain": result.domain.domain, "source": "create_tenant"})
        except TenantExists as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"Tenant {result.tenant.schema_name} created on {result.domain.domain}")
        if result.admin_password:
            self.stdout.write(f"Admin: {result.admin_username}  one-time password: {result.admin_password}")
            self.stdout.write("Change it at first login (/admin/password_change/).")

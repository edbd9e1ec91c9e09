"""manage.py create_tenant <slug> --name … [--domain …] [--admin-email …]: provision a tenant."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

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
            result = tenant_provision(
                slug=options["slug"],
                name=options["name"],
                domain=options.get("domain"),
                admin_email=options.get("admin_email"),
            )
        except TenantExists as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"Tenant {result.tenant.schema_name} created on {result.domain.domain}")
        if result.admin_password:
            self.stdout.write(f"Admin: {result.admin_username}  one-time password: {result.admin_password}")
            self.stdout.write("Change it at first login (/admin/password_change/).")

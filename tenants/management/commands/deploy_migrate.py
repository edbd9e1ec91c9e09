"""manage.py deploy_migrate: what a deployment runs once before new code starts (the chart's migration Job,
compose's `migrate` service, `make cluster`): every schema migrated, the public site present. Idempotent."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from tenants.services import tenant_public_ensure


class Command(BaseCommand):
    help = "Migrate the public schema and every tenant schema, then make sure the public site exists."

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options.get("verbosity", 1))
        call_command("migrate_schemas", executor="standard", interactive=False, verbosity=max(0, verbosity - 1))
        tenant_public_ensure(domain=settings.ATRIUM_BASE_DOMAIN)
        if verbosity:
            self.stdout.write(f"migrated; public site on {settings.ATRIUM_BASE_DOMAIN}")

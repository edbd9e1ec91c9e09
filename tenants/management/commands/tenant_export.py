"""`manage.py tenant_export SLUG --output FILE`: one tenant's archive, to move it to another installation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.models import Tenant
from tenants.transfer import TransferError, tenant_export


def transfer_key(options: dict[str, Any], *, create: bool) -> tuple[str, bool]:
    if options.get("key_file"):
        return Path(options["key_file"]).read_text().strip(), False
    if os.environ.get("ATRIUM_TRANSFER_KEY"):
        return os.environ["ATRIUM_TRANSFER_KEY"].strip(), False
    if not create:
        raise CommandError("give the transfer key with --key-file or ATRIUM_TRANSFER_KEY")
    return Fernet.generate_key().decode(), True


class Command(BaseCommand):
    help = "Export one tenant (schema, audit chain, secrets under a transfer key) to an archive file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the tenant's schema name")
        parser.add_argument("--output", required=True, help="archive file to write (.tar)")
        parser.add_argument("--key-file", help="file holding the transfer key (Fernet); default ATRIUM_TRANSFER_KEY, "
                                               "else a new key is made and printed")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(schema_name=options["slug"]).exclude(schema_name="public").first()
        if tenant is None:
            raise CommandError(f"no tenant {options['slug']!r}")
        key, made = transfer_key(options, create=True)
        try:
            path = tenant_export(tenant=tenant, path=Path(options["output"]), transfer_key=key)
        except TransferError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"exported {tenant.schema_name} to {path}")
        if made:
            self.stdout.write(f"transfer key (keep it apart from the archive; tenant_import needs it): {key}")

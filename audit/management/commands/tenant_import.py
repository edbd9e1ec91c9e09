"""`manage.py tenant_import FILE [--domain D …]`: restore a tenant exported by tenant_export on another
installation, its secrets re-encrypted with this installation's keys, its audit chain verified (in audit: the
tenants app imports no other app, and the verification is audit's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.chain import chain_verify
from tenants.management.commands.tenant_export import transfer_key
from tenants.transfer import TransferError, tenant_import


class Command(BaseCommand):
    help = "Import a tenant archive made by tenant_export (same Atrium version on both sides)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", help="the archive file")
        parser.add_argument("--domain", action="append", default=[],
                            help="domain of the tenant here (repeatable; first is primary); default: the archive's")
        parser.add_argument("--key-file", help="file holding the transfer key; default ATRIUM_TRANSFER_KEY")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["archive"])
        if not path.is_file():
            raise CommandError(f"no archive at {path}")
        key, _ = transfer_key(options, create=False)
        try:
            result = tenant_import(path=path, transfer_key=key, verify=chain_verify, domains=options["domain"] or None)
        except TransferError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"imported {result.tenant.schema_name}: {result.rewrapped} encrypted rows re-encrypted; "
                          f"audit chain: {result.audit}")

"""manage.py verify_receipt FILE: check a downloaded deletion receipt's signature (audit/receipts.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.receipts import receipt_verify


class Command(BaseCommand):
    help = "Verify the signature of a deletion receipt downloaded from the compliance console."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            document = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        ok, message = receipt_verify(document)
        if not ok:
            raise CommandError(message)
        self.stdout.write(message)

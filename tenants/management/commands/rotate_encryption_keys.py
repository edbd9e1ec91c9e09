"""manage.py rotate_encryption_keys: re-encrypt every stored secret under the first configured key."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenants.crypto import DecryptionFailed
from tenants.services import encryption_keys_rotate


class Command(BaseCommand):
    help = "Re-encrypt all secrets with the first key of ATRIUM_ENCRYPTION_KEYS (keep old keys listed until done)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = encryption_keys_rotate()
        except DecryptionFailed as exc:
            raise CommandError(f"{exc}; keep the old key in ATRIUM_ENCRYPTION_KEYS until rotation finishes.") from exc
        self.stdout.write(f"Re-encrypted {count} rows.")

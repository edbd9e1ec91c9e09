"""Writes of SIEM destinations: a saved destination gets its cursor at once, so "no backfill" means "from the
moment it was added", not "from the first streamer run"."""

from __future__ import annotations

from django.db import transaction

from audit.platform.models import SiemCursor, SiemDestination
from audit.siem.streamer import chain_of, cursor_ensure


def siem_destination_save(*, destination: SiemDestination) -> SiemDestination:
    with transaction.atomic():
        destination.save()
        # A destination moved to another chain starts that chain afresh; its old cursor goes.
        SiemCursor.objects.filter(destination=destination).exclude(chain=destination.chain).delete()
        cursor_ensure(destination_id=destination.id, chain=chain_of(destination.chain),
                      backfill=destination.backfill)
    return destination

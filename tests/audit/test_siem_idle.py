"""An idle streaming run: every chain's head in one query, caught-up cursors marked in one UPDATE that never waits
for a cursor another streamer holds."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connection, transaction
from django_tenants.utils import tenant_context
from psycopg import sql

from audit import queries
from audit.platform.models import SiemCursor, SiemDestination
from audit.services import audit_record
from audit.siem.services import siem_destination_save
from audit.siem.streamer import siem_stream_all
from tests.audit.siem_receivers import SyslogReceiver
from tests.conftest import free_port


def test_chain_heads_reads_every_chain_in_one_query(committed: None, tenant_a: Any, tenant_b: Any) -> None:
    with tenant_context(tenant_a), transaction.atomic():
        audit_record(event_type="siem_head_probe")
    connection.set_schema_to_public()
    tables = {"public": queries.platform_table(), "alpha": sql.Identifier("alpha", queries.TENANT_TABLE),
              "beta": sql.Identifier("beta", queries.TENANT_TABLE)}
    heads = queries.chain_heads(tables, chunk=2)  # two round trips: the chunking is exercised
    for chain, table in tables.items():
        head = queries.chain_head(table)
        assert heads[chain] == (head[0] if head else 0)
    assert heads["alpha"] > 0


def test_an_idle_run_marks_caught_up_without_waiting_for_a_held_cursor(committed: None, tenant_a: Any,
                                                                       tenant_b: Any) -> None:
    receiver = SyslogReceiver(free_port())
    receiver.start()
    made_a = siem_destination_save(destination=SiemDestination(name="idle a", tenant=tenant_a, url=receiver.url,
                                                               backfill=False))
    made_b = siem_destination_save(destination=SiemDestination(name="idle b", tenant=tenant_b, url=receiver.url,
                                                               backfill=False))
    held, release = threading.Event(), threading.Event()

    def hold_b() -> None:  # another streamer, mid-batch on destination b
        try:
            with transaction.atomic():
                SiemCursor.objects.select_for_update().get(destination=made_b)
                held.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_b)
    try:
        before = {c.destination_id: c.caught_up_at for c in SiemCursor.objects.filter(
            destination__in=[made_a, made_b])}
        holder.start()
        assert held.wait(timeout=60)
        assert siem_stream_all() == 0  # returns although b's cursor is locked: nothing to send, nothing waited on
        after = {c.destination_id: c.caught_up_at for c in SiemCursor.objects.filter(
            destination__in=[made_a, made_b])}
        assert after[made_a.pk] is not None and after[made_a.pk] != before[made_a.pk]
        assert after[made_b.pk] == before[made_b.pk]  # held elsewhere: left alone
        assert receiver.messages == []
    finally:
        release.set()
        holder.join(timeout=60)
        receiver.stop()
        SiemDestination.objects.filter(pk__in=[made_a.pk, made_b.pk]).delete()

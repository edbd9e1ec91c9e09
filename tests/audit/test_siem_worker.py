"""The SIEM beat task in a real Celery worker and the `stream_audit` command, on committed data."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django_tenants.utils import tenant_context

from audit.platform.models import SiemCursor, SiemDestination
from audit.services import audit_record
from audit.siem.services import siem_destination_save
from tests.audit.siem_receivers import SyslogReceiver
from tests.conftest import free_port


def _write(tenant: Any, count: int) -> list[str]:
    with tenant_context(tenant):
        made = []
        for i in range(count):
            with transaction.atomic():
                entry = audit_record(event_type="siem_worker_probe", metadata={"i": i})
            made.append(f"{tenant.schema_name}/{entry.seq}/{entry.mac}")
    connection.set_schema_to_public()
    return made


@pytest.mark.slow
def test_the_beat_task_streams_from_a_real_worker(celery_worker_process: Any, committed: None,
                                                  tenant_b: Any) -> None:
    from django.conf import settings as django_settings

    from audit.platform.tasks import siem_stream_all as task

    assert django_settings.CELERY_BEAT_SCHEDULE["audit-siem"]["task"] == task.name
    receiver = SyslogReceiver(free_port())
    receiver.start()
    made = siem_destination_save(destination=SiemDestination(name="worker soc", tenant=tenant_b, url=receiver.url,
                                                             backfill=False))
    try:
        written = _write(tenant_b, 3)
        task.apply_async(queue=celery_worker_process.queue)  # ignore_result: wait for its effect instead
        got = receiver.wait_for(3, timeout=60)  # a bound on waiting for the worker, not a synchronisation sleep
        assert [m.document["id"] for m in got] == written
        SiemCursor.objects.get(destination=made)  # exists
    finally:
        receiver.stop()
        SiemDestination.objects.filter(pk=made.pk).delete()


def test_stream_audit_once(committed: None, tenant_a: Any, capsys: Any) -> None:
    receiver = SyslogReceiver(free_port())
    receiver.start()
    made = siem_destination_save(destination=SiemDestination(name="command soc", tenant=tenant_a, url=receiver.url,
                                                             backfill=False))
    try:
        written = _write(tenant_a, 2)
        call_command("stream_audit", "--once")
        assert [m.document["id"] for m in receiver.wait_for(2)] == written
        assert "2 entries acknowledged" in capsys.readouterr().out
        assert SiemCursor.objects.get(destination=made).last_seq == int(written[-1].split("/")[1])
    finally:
        receiver.stop()
        SiemDestination.objects.filter(pk=made.pk).delete()


def test_the_operators_destination_receives_every_trail_from_the_settings(committed: None, tenant_a: Any,
                                                                          tenant_b: Any) -> None:
    from django.test import override_settings

    from audit.siem.streamer import routes, stream_route

    receiver = SyslogReceiver(free_port())
    receiver.start()
    # Trusted: reached although no outbound allow-list entry covers it (an admin-configured one would be refused).
    settings = {"ATRIUM_SIEM_URL": receiver.url, "ATRIUM_SIEM_BACKFILL": False, "ATRIUM_OUTBOUND_ALLOWED_HOSTS": []}
    try:
        with override_settings(**settings):
            operator = [r for r in routes() if r.destination_id is None]
            assert {"public", "alpha", "beta"} <= {r.chain for r in operator}
            by_chain = {r.chain: r for r in operator}
            for chain in ("alpha", "beta"):
                stream_route(by_chain[chain])  # creates the cursors at the heads (no backfill)
            written = _write(tenant_a, 2) + _write(tenant_b, 1)
            for chain in ("alpha", "beta"):
                stream_route(by_chain[chain])
        assert [m.document["id"] for m in receiver.wait_for(3)] == written
        assert set(SiemCursor.objects.filter(destination=None).values_list("chain", flat=True)) >= {"alpha", "beta"}
    finally:
        receiver.stop()
        SiemCursor.objects.filter(destination=None).delete()


@pytest.mark.slow
def test_a_worker_killed_mid_delivery_leaves_the_batch_to_be_sent_again_with_the_same_ids(
        celery_worker_process: Any, committed: None, tenant_a: Any, tmp_path: Any) -> None:
    """SIGKILL while the receiver holds the worker's POST: PostgreSQL rolls the worker's transaction back (the
    cursor stays, its lock goes with the connection) and the next streamer sends the same ids."""
    import threading

    from audit.platform.tasks import siem_stream_all as task
    from audit.siem.streamer import StreamResult, routes, stream_route
    from tests.audit.siem_receivers import WebhookReceiver, self_signed

    receiver = WebhookReceiver(certificate=self_signed(tmp_path), secret="worker-siem-secret", gate=threading.Event())
    receiver.start()
    made = siem_destination_save(destination=SiemDestination(
        name="killed soc", tenant=tenant_a, url=receiver.url, secret="worker-siem-secret",
        ca_bundle=receiver.certificate.cert_pem, backfill=False))
    try:
        written = _write(tenant_a, 2)
        task.apply_async(queue=celery_worker_process.queue)
        assert receiver.arrived.wait(timeout=60)  # the worker holds the cursor, mid-delivery
        celery_worker_process.kill()
        receiver.gate.set()
        with transaction.atomic():  # wait (bounded) until PostgreSQL has let the dead worker's lock go
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '30s'")
            state = SiemCursor.objects.select_for_update().get(destination=made)
        assert state.last_seq == int(written[0].split("/")[1]) - 1  # never committed
        route = next(r for r in routes() if r.destination_id == made.pk)
        assert stream_route(route) == StreamResult(sent=2)
        assert receiver.ids() == written * 2 and all(receiver.signatures_ok)
    finally:
        receiver.gate.set()
        receiver.stop()
        SiemDestination.objects.filter(pk=made.pk).delete()


@pytest.mark.parametrize(("url", "secret", "message"), [
    ("ftp://siem.example/", "", "ATRIUM_SIEM_URL must be"),
    ("https://siem.example/ingest", "", "set ATRIUM_SIEM_SECRET"),
])
def test_a_process_refuses_to_start_with_an_unusable_operator_destination(url: str, secret: str,
                                                                          message: str) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, capture_output=True,
                          env={**subprocess_env_plain(), "ATRIUM_SIEM_URL": url, "ATRIUM_SIEM_SECRET": secret},
                          timeout=120, check=False)
    assert done.returncode != 0 and message in done.stderr.decode()


def subprocess_env_plain() -> dict[str, str]:
    import os

    from tests.conftest import ROOT

    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "PYTHONPATH": str(ROOT)}

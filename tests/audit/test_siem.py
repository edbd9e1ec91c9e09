"""Streaming the audit trail to a SIEM (audit.siem) against real receivers in this process, on committed data: a
TCP/TLS syslog receiver and an HTTPS webhook receiver. Every test writes its own entries and sends only what its
destination has not acknowledged (destinations start at the chain's head: no backfill)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django_tenants.utils import tenant_context

from audit.platform.models import SiemCursor, SiemDestination
from audit.services import audit_record
from audit.siem.services import siem_destination_save
from audit.siem.streamer import Route, StreamResult, routes, stream_route
from tests.audit.siem_receivers import SyslogReceiver, WebhookReceiver, self_signed
from tests.conftest import free_port

SECRET = "test-siem-secret"


def write(tenant: Any, count: int) -> list[tuple[int, str]]:
    """`count` committed entries in `tenant`'s chain: their (seq, mac)."""
    made = []
    with tenant_context(tenant):
        for i in range(count):
            with transaction.atomic():
                entry = audit_record(event_type="siem_probe", metadata={"i": i})
            made.append((entry.seq, entry.mac))
    connection.set_schema_to_public()
    return made


@contextlib.contextmanager
def destination(tenant: Any, url: str, **fields: Any) -> Iterator[SiemDestination]:
    made = siem_destination_save(destination=SiemDestination(name=f"test {url}", tenant=tenant, url=url,
                                                             backfill=False, **fields))
    try:
        yield made
    finally:
        SiemDestination.objects.filter(pk=made.pk).delete()


def route(made: SiemDestination) -> Route:
    return next(r for r in routes() if r.destination_id == made.pk)


def cursor(made: SiemDestination) -> SiemCursor:
    return SiemCursor.objects.get(destination=made)


def ids(tenant: Any, written: list[tuple[int, str]]) -> list[str]:
    return [f"{tenant.schema_name}/{seq}/{mac}" for seq, mac in written]


@pytest.fixture
def syslog() -> Iterator[SyslogReceiver]:
    receiver = SyslogReceiver(free_port())
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def certificate(tmp_path: Path) -> Any:
    return self_signed(tmp_path)


@pytest.fixture
def webhook(certificate: Any) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(certificate=certificate, secret=SECRET)
    receiver.start()
    yield receiver
    if receiver.gate is not None:
        receiver.gate.set()
    receiver.stop()


def test_syslog_over_tcp_sends_each_entry_once_in_order_with_its_stable_id(
        committed: None, tenant_a: Any, syslog: SyslogReceiver) -> None:
    with destination(tenant_a, syslog.url) as made:
        start = cursor(made).last_seq
        written = write(tenant_a, 5)
        assert written[0][0] == start + 1
        result = stream_route(route(made))
        assert result == StreamResult(sent=5)
        messages = syslog.wait_for(5)
        assert [m.document["id"] for m in messages] == ids(tenant_a, written)
        assert [m.document["seq"] for m in messages] == [seq for seq, _ in written]
        first = messages[0]
        assert first.header.startswith("<110>1 ")  # facility 13 (log audit), severity 6 (informational)
        assert first.header.endswith(" atrium - siem_probe")
        assert f'id="{first.document["id"]}"' in first.structured and f'seq="{written[0][0]}"' in first.structured
        assert first.document["chained"]["event_type"] == "siem_probe" and first.document["chain"] == "alpha"
        assert "personal" not in first.document and "user_id" not in first.document
        assert cursor(made).last_seq == written[-1][0] and syslog.errors == []
        # Nothing new: nothing sent, the receiver gets no second copy.
        assert stream_route(route(made)) == StreamResult(sent=0)
        assert len(syslog.messages) == 5


@override_settings(ATRIUM_SIEM_FAILURE_BACKOFF_MAX_S=0, ATRIUM_SIEM_TIMEOUT_S=5)
def test_receiver_down_then_up_loses_nothing_and_leaves_no_gap(committed: None, tenant_a: Any) -> None:
    port = free_port()
    receiver = SyslogReceiver(port)
    with destination(tenant_a, receiver.url) as made:
        before = write(tenant_a, 3)
        down = stream_route(route(made))
        assert down.failed and down.sent == 0
        state = cursor(made)
        assert state.last_seq == before[0][0] - 1 and state.failures == 1 and "cannot connect" in state.last_error
        assert state.head_seq == before[-1][0]  # the lag is known while the receiver is down
        receiver.start()
        try:
            after = write(tenant_a, 2)
            assert stream_route(route(made)) == StreamResult(sent=5)
            assert [m.document["id"] for m in receiver.wait_for(5)] == ids(tenant_a, before + after)
            assert cursor(made).failures == 0 and cursor(made).last_seq == after[-1][0]
        finally:
            receiver.stop()


def test_a_crash_before_the_cursor_moved_resends_the_same_ids(committed: None, tenant_a: Any,
                                                               webhook: WebhookReceiver) -> None:
    with destination(tenant_a, webhook.url, secret=SECRET, ca_bundle=webhook.certificate.cert_pem) as made:
        written = write(tenant_a, 4)
        # The receiver acknowledges, then the streamer's transaction never commits (as if the process died there).
        with contextlib.suppress(RuntimeError), transaction.atomic():
            assert stream_route(route(made)).sent == 4
            raise RuntimeError("the process dies before the cursor's commit")
        assert cursor(made).last_seq == written[0][0] - 1
        assert stream_route(route(made)).sent == 4
        assert webhook.ids() == ids(tenant_a, written) * 2  # the same ids: the receiver dedupes on them
        assert len(set(webhook.ids())) == 4 and all(webhook.signatures_ok)


@override_settings(ATRIUM_SIEM_HTTP_RETRIES=2, ATRIUM_SIEM_RETRY_BACKOFF_S=0.01)
def test_a_webhook_answering_500_is_retried(committed: None, tenant_a: Any, webhook: WebhookReceiver) -> None:
    with destination(tenant_a, webhook.url, secret=SECRET, ca_bundle=webhook.certificate.cert_pem) as made:
        written = write(tenant_a, 3)
        webhook.statuses[:] = [500, 503]
        assert stream_route(route(made)) == StreamResult(sent=3)
        assert len(webhook.bodies) == 3 and webhook.ids() == ids(tenant_a, written) * 3
        body = webhook.bodies[-1]
        assert body["format"] == "atrium-audit-siem" and body["chain"] == "alpha"
        assert (body["first_seq"], body["last_seq"]) == (written[0][0], written[-1][0])
        assert cursor(made).last_seq == written[-1][0]
        # Failing past the retries: not acknowledged, the cursor stays, the error is recorded (no content).
        more = write(tenant_a, 1)
        webhook.statuses[:] = [500, 500, 500]
        failed = stream_route(route(made))
        assert failed.failed and cursor(made).last_seq == written[-1][0]
        assert cursor(made).last_error == "the receiver answered HTTP 500"
        assert webhook.ids()[-1] == ids(tenant_a, more)[0]


def test_a_second_streamer_skips_a_destination_being_streamed(committed: None, tenant_a: Any,
                                                              webhook: WebhookReceiver) -> None:
    with destination(tenant_a, webhook.url, secret=SECRET, ca_bundle=webhook.certificate.cert_pem) as made:
        written = write(tenant_a, 2)
        webhook.gate = threading.Event()
        results: list[StreamResult] = []

        def first_worker() -> None:
            try:
                results.append(stream_route(route(made)))
            finally:
                connection.close()

        worker = threading.Thread(target=first_worker)
        worker.start()
        try:
            assert webhook.arrived.wait(timeout=60)  # the first worker holds the cursor and is mid-delivery
            second = stream_route(route(made))  # this thread: its own database connection
            assert second == StreamResult(sent=0, skipped=True)
            assert len(webhook.bodies) == 1
        finally:
            webhook.gate.set()
            worker.join(timeout=60)
        assert results == [StreamResult(sent=2)]
        assert webhook.ids() == ids(tenant_a, written) and cursor(made).last_seq == written[-1][0]


def test_a_tenants_destination_never_receives_another_tenants_entries(committed: None, tenant_a: Any,
                                                                       tenant_b: Any) -> None:
    alpha, beta = SyslogReceiver(free_port()), SyslogReceiver(free_port())
    alpha.start()
    beta.start()
    try:
        with destination(tenant_a, alpha.url) as made_a, destination(tenant_b, beta.url) as made_b:
            written_a, written_b = write(tenant_a, 3), write(tenant_b, 4)
            for made in (made_a, made_b):
                stream_route(route(made))
            got_a = [m.document for m in alpha.wait_for(3)]
            got_b = [m.document for m in beta.wait_for(4)]
            assert [d["id"] for d in got_a] == ids(tenant_a, written_a)
            assert [d["id"] for d in got_b] == ids(tenant_b, written_b)
            assert {d["chain"] for d in got_a} == {"alpha"} and {d["chain"] for d in got_b} == {"beta"}
            assert not {mac for _, mac in written_b} & {d["mac"] for d in got_a}
    finally:
        alpha.stop()
        beta.stop()


def test_tls_verification_failure_is_an_error_never_plaintext(committed: None, tenant_a: Any,
                                                              certificate: Any) -> None:
    receiver = SyslogReceiver(free_port(), tls=certificate.server_context())
    receiver.start()
    try:
        # The receiver's certificate is self-signed: the system's CAs do not vouch for it.
        with destination(tenant_a, receiver.url) as made:
            write(tenant_a, 2)
            result = stream_route(route(made))
            assert result.failed and receiver.messages == []
            assert cursor(made).last_error.startswith("TLS certificate not accepted")
            assert receiver.first_bytes and all(b == b"\x16" for b in receiver.first_bytes)  # TLS, never plain
        # Trusting that certificate (the destination's CA bundle), the same trail goes through TLS.
        with destination(tenant_a, receiver.url, ca_bundle=certificate.cert_pem) as made:
            written = write(tenant_a, 2)
            assert stream_route(route(made)) == StreamResult(sent=2)
            assert [m.document["id"] for m in receiver.wait_for(2)] == ids(tenant_a, written)
    finally:
        receiver.stop()


def test_the_webhook_refuses_an_untrusted_certificate_without_retrying(committed: None, tenant_a: Any,
                                                                      certificate: Any) -> None:
    receiver = WebhookReceiver(certificate=certificate, secret=SECRET)
    receiver.start()
    try:
        with destination(tenant_a, receiver.url, secret=SECRET) as made:
            write(tenant_a, 1)
            assert stream_route(route(made)).failed
            assert receiver.bodies == [] and cursor(made).last_error.startswith("TLS certificate not accepted")
    finally:
        receiver.stop()


@override_settings(ATRIUM_SIEM_TIMEOUT_S=1)
def test_a_syslog_receiver_that_never_closes_has_not_acknowledged(committed: None, tenant_a: Any) -> None:
    """Our write returning is no acknowledgement: the receiver closing after reading to the end is."""
    held = threading.Event()
    receiver = SyslogReceiver(free_port(), hold_open=held)
    receiver.start()
    try:
        with destination(tenant_a, receiver.url) as made:
            written = write(tenant_a, 2)
            result = stream_route(route(made))
            assert result.failed and cursor(made).last_seq == written[0][0] - 1
            assert cursor(made).last_error == "the receiver did not acknowledge the batch in time"
            held.set()  # the receiver behaves again: the same ids are sent again
            SiemCursor.objects.filter(destination=made).update(next_attempt_at=None)
            assert stream_route(route(made)) == StreamResult(sent=2)
            assert [m.document["id"] for m in receiver.wait_for(4)] == ids(tenant_a, written) * 2
    finally:
        held.set()
        receiver.stop()


def test_a_chain_shorter_than_what_was_sent_is_reported_not_called_caught_up(committed: None, tenant_a: Any,
                                                                            syslog: SyslogReceiver) -> None:
    """The trail's tail cannot be deleted (trigger), so the cursor is set past the head to stand for it."""
    with destination(tenant_a, syslog.url) as made:
        head = cursor(made).head_seq
        SiemCursor.objects.filter(destination=made).update(last_seq=head + 5)
        result = stream_route(route(made))
        assert result.failed and syslog.messages == []
        state = cursor(made)
        assert state.failures == 1 and state.last_error.startswith(f"the chain's head #{head} is behind")
        assert state.caught_up_at is None


def test_a_receiver_holding_the_chain_key_can_check_every_entry_and_link(committed: None, tenant_a: Any,
                                                                         syslog: SyslogReceiver) -> None:
    """What docs/siem.md promises: `chained` is exactly what the MAC covers, `prev_mac` links to the entry before."""
    from audit.verify import entry_mac_of, key_fingerprint
    from tenants.models import Tenant

    key = str(Tenant.objects.get(pk=tenant_a.pk).audit_key).encode()
    with destination(tenant_a, syslog.url) as made:
        write(tenant_a, 3)
        stream_route(route(made))
        docs = [m.document for m in syslog.wait_for(3)]
    for before, doc in zip([None, *docs], docs, strict=False):
        assert entry_mac_of(key, doc["prev_mac"], doc["chained"]) == doc["mac"]
        assert doc["key_id"] == key_fingerprint(key)
        if before is not None:
            assert doc["prev_mac"] == before["mac"] and doc["seq"] == before["seq"] + 1

"""The batch writer behind /v1 call records (inference.recorder) and the batched writes it calls."""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import Any

import pytest

from inference.recorder import BatchWriter


@pytest.fixture
def background(settings: Any) -> Any:
    settings.ATRIUM_RECORD_IN_BACKGROUND = True
    settings.ATRIUM_RECORDER_LINGER_MS = 200
    settings.ATRIUM_RECORDER_BATCH = 500
    settings.ATRIUM_RECORDER_MAX_PENDING = 10_000
    return settings


def test_records_are_written_in_batches_in_order_off_the_callers_thread(background: Any) -> None:
    batches: list[list[int]] = []
    threads: set[str] = set()

    def write(batch: list[int]) -> None:
        threads.add(threading.current_thread().name)
        batches.append(list(batch))

    writer: BatchWriter[int] = BatchWriter(f"t-{uuid.uuid4().hex[:6]}", write)
    for n in range(300):
        writer.submit(n)
    assert writer.flush(timeout=30)
    assert [n for batch in batches for n in batch] == list(range(300))
    assert len(batches) < 300 / 10  # batched, not one write per record
    assert threading.current_thread().name not in threads


def test_a_full_batch_is_written_without_waiting_out_the_linger(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 60_000
    background.ATRIUM_RECORDER_BATCH = 5
    written = threading.Event()
    sizes: list[int] = []

    def write(batch: list[int]) -> None:
        sizes.append(len(batch))
        written.set()

    writer: BatchWriter[int] = BatchWriter(f"t-{uuid.uuid4().hex[:6]}", write)
    for n in range(5):
        writer.submit(n)
    assert written.wait(timeout=30), "a full batch waited for the linger"
    assert sizes == [5]


def test_a_failing_batch_is_retried_record_by_record(background: Any, caplog: Any) -> None:
    written: list[str] = []

    def write(batch: list[str]) -> None:
        if "bad" in batch:
            raise ValueError("this record cannot be written")
        written.extend(batch)

    writer: BatchWriter[str] = BatchWriter(f"t-{uuid.uuid4().hex[:6]}", write)
    for item in ("a", "b", "bad", "c"):
        writer.submit(item)
    assert writer.flush(timeout=30)
    assert written == ["a", "b", "c"]
    assert "could not record a completed model call" in caplog.text


def test_a_saturated_writer_pushes_back_on_the_caller(background: Any) -> None:
    background.ATRIUM_RECORDER_MAX_PENDING = 0
    threads: list[str] = []
    writer: BatchWriter[int] = BatchWriter(f"t-{uuid.uuid4().hex[:6]}", lambda batch: threads.append(
        threading.current_thread().name))
    writer.submit(1)
    assert threads == [threading.current_thread().name]  # written before submit returned, nothing dropped


def test_usage_counts_of_one_batch_are_summed_per_row(in_tenant: Any, tenant_a: Any, make_user: Any) -> None:
    from inference.models import UsageDaily
    from inference.services import UsageCount, usage_add_many

    user = make_user(tenant_a)
    with in_tenant(tenant_a):
        usage_add_many([UsageCount(user.pk, "claude-haiku-5-5", "anthropic", 10, 5, False),
                        UsageCount(user.pk, "claude-haiku-5-5", "anthropic", 1, 2, True),
                        UsageCount(user.pk, "claude-haiku-5-5", "bedrock", 7, 7, False)])
        usage_add_many([UsageCount(user.pk, "claude-haiku-5-5", "anthropic", 100, 0, False),
                        UsageCount(999_999_999, "claude-haiku-5-5", "anthropic", 3, 3, False)])  # a deleted user
        rows = {(r.user_id, r.provider): (r.requests, r.errors, r.input_tokens, r.output_tokens)
                for r in UsageDaily.objects.filter(model="claude-haiku-5-5")}
    assert rows[(user.pk, "anthropic")] == (3, 1, 111, 7)
    assert rows[(user.pk, "bedrock")] == (1, 0, 7, 7)
    assert rows[(None, "anthropic")][0] >= 1  # counted anonymously, not lost with the batch


def test_a_batch_of_audit_entries_chains_and_verifies(in_tenant: Any, tenant_a: Any) -> None:
    from audit.chain import chain_verify
    from audit.models import AuditEntry
    from audit.services import audit_append, audit_event

    with in_tenant(tenant_a):
        before = AuditEntry.objects.count()
        entries = audit_append([audit_event(event_type="model_call", user_id=7, personal={"ip": "10.0.0.1"},
                                            input_payload={"n": n}, metadata={"n": n}) for n in range(20)])
        assert [e.seq for e in entries] == list(range(entries[0].seq, entries[0].seq + 20))
        assert all(b.prev_mac == a.mac for a, b in itertools.pairwise(entries))
        assert AuditEntry.objects.count() == before + 20
        assert chain_verify().ok

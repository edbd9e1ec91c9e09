"""The batch writer behind /v1 call records (inference.recorder) and the idempotent writes it calls
(inference.records): group commit, retry-never-drop, supervision, the journal, exactly-once records."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from typing import Any

from inference.record_journal import journal_records
from inference.recorder import BatchWriter
from tests.inference.conftest import string_codec


def _name() -> str:
    return f"t{uuid.uuid4().hex[:6]}"




def test_records_are_written_in_batches_in_order_off_the_callers_thread(background: Any) -> None:
    batches: list[list[int]] = []
    threads: set[str] = set()

    def write(batch: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        batches.append(list(batch))
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    tickets = [writer.submit(n) for n in range(300)]
    assert writer.flush(timeout=30)
    assert all(t.done for t in tickets)
    assert [n for batch in batches for n in batch] == list(range(300))
    assert len(batches) < 300 / 10  # batched, not one write per record
    assert threading.current_thread().name not in threads


def test_a_ticket_is_done_only_once_its_record_is_written(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 0
    release = threading.Event()

    def write(batch: list[int]) -> list[int]:
        release.wait(30)
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    ticket = writer.submit(1)
    assert not ticket.wait(0.3)  # the write has not finished: the response must not complete
    release.set()
    assert ticket.wait(30)


def test_a_full_batch_is_written_without_waiting_out_the_linger(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 60_000
    background.ATRIUM_RECORDER_BATCH = 5
    written = threading.Event()
    sizes: list[int] = []

    def write(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        written.set()
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    for n in range(5):
        writer.submit(n)
    assert written.wait(timeout=30), "a full batch waited for the linger"
    assert sizes == [5]


def test_a_waiting_caller_still_gets_the_configured_linger_for_group_commit(background: Any) -> None:
    # Records whose callers wait for the commit are gathered for ATRIUM_RECORDER_LINGER_MS, as documented: a
    # second call arriving within it joins the first one's transaction instead of the writer taking the first
    # one alone (the shortcut of the journaled linger must not apply to them).
    background.ATRIUM_RECORDER_LINGER_MS = 5_000
    batches: list[list[int]] = []

    def write(batch: list[int]) -> list[int]:
        batches.append(list(batch))
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    writer.submit(0)
    time.sleep(0.1)
    writer.submit(1)
    assert writer.flush(timeout=30)  # cuts the linger short
    assert batches == [[0, 1]]


def test_failing_records_are_retried_until_written_never_dropped(background: Any, caplog: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 0
    written: list[str] = []
    failures = {"b:bad": 4}  # fails four times, then the database takes it

    def write(batch: list[str]) -> list[str]:
        left = []
        for item in batch:
            if failures.get(item, 0) > 0:
                failures[item] -= 1
                left.append(item)
            else:
                written.append(item)
        return left

    writer: BatchWriter[str] = BatchWriter(_name(), write, string_codec())
    tickets = [writer.submit(item) for item in ("a:1", "b:bad", "a:2")]
    assert tickets[0].wait(30) and tickets[2].wait(30)  # the good records do not wait for the bad one
    assert writer.degraded("b") or tickets[1].done
    assert not writer.degraded("a")
    assert tickets[1].wait(30)
    assert sorted(written) == ["a:1", "a:2", "b:bad"]  # each once
    assert not writer.degraded("b")
    assert "record_retry" in caplog.text


def test_a_raising_write_is_retried_not_dropped(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 0
    calls = itertools.count()
    written: list[int] = []

    def write(batch: list[int]) -> list[int]:
        if next(calls) < 2:
            raise ConnectionError("database unreachable")
        written.extend(batch)
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    ticket = writer.submit(7)
    assert ticket.wait(30)
    assert written == [7]


def test_a_saturated_writer_makes_callers_wait_for_room(background: Any) -> None:
    background.ATRIUM_RECORDER_LINGER_MS = 0
    background.ATRIUM_RECORDER_MAX_PENDING = 1
    release = threading.Event()
    written: list[int] = []

    def write(batch: list[int]) -> list[int]:
        release.wait(30)
        written.extend(batch)
        return []

    writer: BatchWriter[int] = BatchWriter(_name(), write)
    writer.submit(1)
    submitted = threading.Event()
    threading.Thread(target=lambda: (writer.submit(2), submitted.set()), daemon=True).start()
    assert not submitted.wait(0.5)  # no room: the caller waits (nothing is dropped, nothing written twice)
    release.set()
    assert submitted.wait(30)
    assert writer.flush(timeout=30)
    assert written == [1, 2]


class _Die(BaseException):
    """Kills the writer thread (as an unexpected error escaping its loop would)."""


def test_a_dead_writer_thread_is_restarted_with_its_records(background: Any, caplog: Any) -> None:
    from inference import metrics

    background.ATRIUM_RECORDER_LINGER_MS = 0
    died = threading.Event()
    written: list[int] = []

    def write(batch: list[int]) -> list[int]:
        if not died.is_set():
            died.set()
            raise _Die()
        written.extend(batch)
        return []

    before = metrics.RECORDER_RESTARTS._value.get()
    writer: BatchWriter[int] = BatchWriter(_name(), write)
    first = writer.submit(1)
    assert died.wait(30)
    time.sleep(0.2)  # the thread is gone
    second = writer.submit(2)  # finds the writer dead and starts another with the record it held
    assert first.wait(30) and second.wait(30)
    assert sorted(written) == [1, 2]
    assert metrics.RECORDER_RESTARTS._value.get() == before + 1
    assert "recorder_restarted" in caplog.text


def test_a_dead_processs_journal_is_replayed_exactly_once(background: Any) -> None:
    import fcntl
    import os

    name = _name()
    journal_dir = background.ATRIUM_RECORD_JOURNAL_DIR
    os.makedirs(journal_dir)
    path = os.path.join(journal_dir, f"{name}-99999-dead.journal")
    with open(path, "w") as handle:  # what a killed process left: two records and a torn line
        handle.write(json.dumps("a:1") + "\n" + json.dumps("b:2") + "\n" + '"a:3')
    live = open(os.path.join(journal_dir, f"{name}-1-live.journal"), "w")  # noqa: SIM115 - a live process's
    fcntl.flock(live.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    live.write(json.dumps("a:live") + "\n")
    live.flush()
    written: list[str] = []
    writer: BatchWriter[str] = BatchWriter(name, lambda batch: written.extend(batch) or [], string_codec())
    writer.start()
    deadline = time.monotonic() + 30
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(path)  # replayed, then removed
    assert sorted(written) == ["a:1", "b:2"]  # the live process's journal is left alone
    live.close()


def test_journaled_records_survive_until_written_then_the_journal_empties(background: Any) -> None:

    background.ATRIUM_RECORDER_LINGER_MS = 0
    release = threading.Event()
    written: list[str] = []

    def write(batch: list[str]) -> list[str]:
        if not release.is_set():
            return batch  # the database does not take it yet
        written.extend(batch)
        return []

    writer: BatchWriter[str] = BatchWriter(_name(), write, string_codec())
    ticket = writer.submit("a:1")
    assert not ticket.wait(0.3)
    writer.journal("a:1")
    journal = writer._journal_path
    with open(journal, "rb") as handle:
        records, _torn = journal_records(handle.read())
    assert [json.loads(record) for record in records] == ["a:1"]  # durable before the response went on
    release.set()
    assert ticket.wait(30)
    assert written == ["a:1"]
    with open(journal, "rb") as handle:
        assert journal_records(handle.read()) == ([], 0)  # rewound: nothing to replay


def test_a_write_stuck_longer_than_a_commit_should_take_degrades_until_it_ends(background: Any) -> None:
    """degraded() reads the batch's start without the lock: a batch just begun is not stuck, one older than
    ATRIUM_RECORD_COMMIT_WAIT_MS is (for every tenant), and once written nothing is."""
    background.ATRIUM_RECORDER_LINGER_MS = 0
    background.ATRIUM_RECORD_COMMIT_WAIT_MS = 300
    entered, release = threading.Event(), threading.Event()

    def write(batch: list[str]) -> list[str]:
        entered.set()
        release.wait(30)
        return []

    writer: BatchWriter[str] = BatchWriter(_name(), write, string_codec())
    ticket = writer.submit("a:1")
    assert entered.wait(30)
    assert not writer.degraded("a")  # begun just now
    deadline = time.monotonic() + 10
    while not writer.degraded("b") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.degraded("b")
    assert writer.degraded("a")
    release.set()
    assert ticket.wait(30)
    assert writer.flush(timeout=30)
    assert not writer.degraded("a")

"""Journal-first records (inference.record_journal, BatchWriter.submit_journaled): a serve_and_journal tenant's
call record is on disk when the call may answer, one fdatasync serves many concurrent calls, segments are deleted
once their records are written, and what a killed process journaled is written exactly once by the next one."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from inference import record_journal
from inference.recorder import BatchWriter
from tests.inference.conftest import string_codec


def _lines(directory: str) -> list[str]:
    found: list[str] = []
    for path in sorted(Path(directory).glob("*.journal")):
        records, _torn = record_journal.journal_records(path.read_bytes())
        found.extend(json.loads(record) for record in records)
    return found


class _Gate:
    """A database that takes nothing until opened."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.written: list[str] = []
        self.lock = threading.Lock()

    def write(self, batch: list[str]) -> list[str]:
        if not self.open.is_set():
            return batch
        with self.lock:
            self.written.extend(batch)
        return []



def _replayed_by_a_new_writer(name: str, journal: Path) -> list[str]:
    """Start a new writer of `name` (as the next process would): what it wrote from the dead process's journal,
    once that journal is gone (replayed and deleted)."""
    gate = _Gate()
    gate.open.set()
    survivor: BatchWriter[str] = BatchWriter(name, gate.write, string_codec())
    survivor.start()
    deadline = time.monotonic() + 30
    while journal.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not journal.exists()
    return list(gate.written)


def test_a_journaled_record_is_on_disk_when_submit_returns_and_written_after(background: Any) -> None:
    gate = _Gate()
    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", gate.write, string_codec())
    writer.submit_journaled("a:1")
    # The call may answer now: its record is in the journal (fsynced) although the database has taken nothing.
    assert _lines(background.ATRIUM_RECORD_JOURNAL_DIR) == ["a:1"]
    assert gate.written == []
    gate.open.set()
    assert writer.flush(timeout=30)
    assert gate.written == ["a:1"]
    assert _lines(background.ATRIUM_RECORD_JOURNAL_DIR) == []  # written: the journal is emptied


def test_one_fdatasync_serves_many_concurrent_calls(background: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = _Gate()
    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", gate.write, string_codec())
    callers = 24
    syncs: list[str] = []
    real, real_pwritev = os.fdatasync, os.pwritev

    def first_waits() -> None:  # the first sync waits until every caller has appended: the next one covers them all
        if not syncs:
            deadline = time.monotonic() + 30
            while writer._appended < callers and time.monotonic() < deadline:
                time.sleep(0.001)

    def fdatasync(fd: int) -> None:
        first_waits()
        syncs.append("fdatasync")
        real(fd)

    def pwritev(fd: int, buffers: list[bytes], offset: int, flags: int = 0) -> int:
        if flags:  # a lone line written with RWF_DSYNC is a sync too
            first_waits()
            syncs.append("dsync")
        return real_pwritev(fd, buffers, offset, flags)

    monkeypatch.setattr(record_journal.os, "fdatasync", fdatasync)
    monkeypatch.setattr(record_journal.os, "pwritev", pwritev)
    on_disk: dict[str, bool] = {}

    def call(n: int) -> None:
        writer.submit_journaled(f"a:{n}")
        on_disk[f"a:{n}"] = f"a:{n}" in _lines(background.ATRIUM_RECORD_JOURNAL_DIR)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(on_disk) == callers and all(on_disk.values())
    assert len(syncs) <= 2, syncs  # group fsync: not one per call
    gate.open.set()
    assert writer.flush(timeout=30)
    assert sorted(gate.written) == sorted(f"a:{n}" for n in range(callers))


def test_a_lone_line_is_written_and_synced_by_one_rwf_dsync_write(background: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if not record_journal.JournalMixin._dsync:
        pytest.skip("RWF_DSYNC is not available here")
    calls: list[tuple[str, int]] = []
    real, real_pwritev = os.fdatasync, os.pwritev

    def fdatasync(fd: int) -> None:
        calls.append(("fdatasync", 0))
        real(fd)

    def pwritev(fd: int, buffers: list[bytes], offset: int, flags: int = 0) -> int:
        calls.append(("pwritev", flags))
        return real_pwritev(fd, buffers, offset, flags)

    monkeypatch.setattr(record_journal.os, "fdatasync", fdatasync)
    monkeypatch.setattr(record_journal.os, "pwritev", pwritev)
    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", _Gate().write, string_codec())
    writer.submit_journaled("a:1")
    writer.submit_journaled("a:2")
    # Every line before it on disk, no sync in progress: one write that is on disk when it returns, no fdatasync.
    assert calls == [("pwritev", os.RWF_DSYNC)] * 2
    assert _lines(background.ATRIUM_RECORD_JOURNAL_DIR) == ["a:1", "a:2"]


def test_where_rwf_dsync_is_refused_a_line_is_written_then_fdatasynced(background: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record_journal.JournalMixin, "_dsync", True)  # restored after the test
    syncs: list[int] = []
    real = os.fdatasync

    def refused(fd: int, buffers: list[bytes], offset: int, flags: int = 0) -> int:
        raise OSError(errno.EOPNOTSUPP, "not here")

    def fdatasync(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(record_journal.os, "pwritev", refused)
    monkeypatch.setattr(record_journal.os, "fdatasync", fdatasync)
    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", _Gate().write, string_codec())
    writer.submit_journaled("a:1")
    writer.submit_journaled("a:2")
    assert len(syncs) == 2 and not record_journal.JournalMixin._dsync  # not tried again
    assert _lines(background.ATRIUM_RECORD_JOURNAL_DIR) == ["a:1", "a:2"]


def test_a_lone_line_that_cannot_be_written_fails_the_lines_appended_after_it(background: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record_journal.JournalMixin, "_dsync", True)
    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", _Gate().write, string_codec())
    writing = threading.Event()
    real_pwritev = os.pwritev

    def failing(fd: int, buffers: list[bytes], offset: int, flags: int = 0) -> int:
        if not flags or writing.is_set():
            return real_pwritev(fd, buffers, offset, flags)
        writing.set()  # its place is taken: the next line is appended after it, then this write fails
        deadline = time.monotonic() + 30
        while writer._appended < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        raise OSError(errno.EIO, "disk error")

    monkeypatch.setattr(record_journal.os, "pwritev", failing)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            writer.submit_journaled("a:1")
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert writing.wait(30)
    # Its line follows a hole: a replay would stop before it, so it is not durable.
    with pytest.raises(OSError, match="could not be written"):
        writer.submit_journaled("a:2")
    thread.join(30)
    assert len(errors) == 1
    writer.submit_journaled("a:3")  # a new segment
    assert _lines(background.ATRIUM_RECORD_JOURNAL_DIR) == ["a:3"]


def test_a_segment_retired_during_a_sync_keeps_its_fd_until_that_sync_is_over(background: Any) -> None:
    background.ATRIUM_RECORD_JOURNAL_SEGMENT_MB = 10 / (1024 * 1024)  # a new segment at each line
    gate = _Gate()
    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", gate.write, string_codec())
    first = writer._journal_append("a:1")
    with writer._journal_lock:
        first.pins += 1  # as a sync of it in progress outside the lock (_journal_sync)
    inode = os.fstat(first.fd).st_ino
    writer._journal_written(writer._journal_append("a:2"))
    writer._journal_written(first)  # its record written: the segment is retired while the sync holds it
    assert not os.path.exists(first.path)
    assert os.fstat(first.fd).st_ino == inode  # not closed: the sync's fd is still this file's
    with writer._journal_lock:
        writer._unpin(first)  # the sync is over: the fd is closed now
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(first.fd)


def test_full_segments_are_deleted_once_their_records_are_written(background: Any) -> None:
    background.ATRIUM_RECORD_JOURNAL_SEGMENT_MB = 10 / (1024 * 1024)  # 10 bytes: a new segment every two lines
    gate = _Gate()
    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", gate.write, string_codec())
    items = [f"a:{n}" for n in range(7)]
    for item in items:
        writer.submit_journaled(item)
    directory = Path(background.ATRIUM_RECORD_JOURNAL_DIR)
    assert len(list(directory.glob("*.journal"))) >= 3
    assert sorted(_lines(str(directory))) == sorted(items)  # nothing lost at a rotation
    gate.open.set()
    assert writer.flush(timeout=30)
    assert gate.written == items
    left = list(directory.glob("*.journal"))
    assert len(left) == 1 and _lines(str(directory)) == []  # only the current segment, rewound


def test_a_killed_processs_journal_is_written_once_by_the_next_writer(background: Any) -> None:
    """A journal-first record whose process was SIGKILLed before its commit is replayed by the next writer,
    exactly once, and its file removed."""
    name = f"j{uuid.uuid4().hex[:6]}"
    directory = Path(background.ATRIUM_RECORD_JOURNAL_DIR)
    child = os.fork()
    if child == 0:  # the process that dies: it journals two records, the database takes nothing, then SIGKILL
        try:
            dead: BatchWriter[str] = BatchWriter(name, _Gate().write, string_codec())
            dead.submit_journaled("a:1")
            dead.submit_journaled("b:2")
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _pid, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    files = list(directory.glob(f"{name}-*.journal"))
    assert len(files) == 1 and sorted(_lines(str(directory))) == ["a:1", "b:2"]
    assert sorted(_replayed_by_a_new_writer(name, files[0])) == ["a:1", "b:2"]


def test_a_scan_while_a_segment_is_being_created_cannot_take_it(background: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer's scan for dead journals runs between the new segment's creation and its lock (the gap
    where it used to find an unlocked, empty .journal and delete it): the record stays on disk."""
    name = f"j{uuid.uuid4().hex[:6]}"
    gate = _Gate()
    writer: BatchWriter[str] = BatchWriter(name, gate.write, string_codec())
    scanner: BatchWriter[str] = BatchWriter(name, gate.write, string_codec())
    real = record_journal.fcntl.flock
    scanned: list[bool] = []

    def flock(fd: int, operation: int) -> None:
        if not scanned and threading.current_thread() is threading.main_thread():
            scanned.append(True)
            scanner._next_scan = 0.0
            scanner._scan_journals()  # in the gap: created, not locked yet
        real(fd, operation)

    monkeypatch.setattr(record_journal.fcntl, "flock", flock)
    writer.submit_journaled("a:1")
    assert scanned == [True]
    assert _lines(background.ATRIUM_RECORD_JOURNAL_DIR) == ["a:1"]
    assert scanner._replays == [] and not scanner._queue
    gate.open.set()
    assert writer.flush(timeout=30) and gate.written == ["a:1"]


def test_an_unborn_segment_of_a_killed_process_is_removed_once_old(background: Any) -> None:
    name = f"j{uuid.uuid4().hex[:6]}"
    directory = Path(background.ATRIUM_RECORD_JOURNAL_DIR)
    directory.mkdir(parents=True)
    old, young = directory / f"{name}-1-aaaa.journal.new", directory / f"{name}-2-bbbb.journal.new"
    old.touch()
    young.touch()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    writer: BatchWriter[str] = BatchWriter(name, _Gate().write, string_codec())
    writer._scan_journals()
    assert not old.exists() and young.exists()


def test_a_segment_is_preallocated_and_rewound_never_grown_or_truncated(background: Any) -> None:
    """The segment has its full size from its first line on; once its records are written it is rewound, and
    what it held before reads as nothing (a replay of it now would write nothing again)."""
    background.ATRIUM_RECORD_JOURNAL_SEGMENT_MB = 1
    gate = _Gate()
    gate.open.set()
    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", gate.write, string_codec())
    writer.submit_journaled("a:1")
    path = Path(writer._journal_path)
    assert path.stat().st_size == 1024 * 1024
    assert writer.flush(timeout=30) and gate.written == ["a:1"]
    assert record_journal.journal_records(path.read_bytes()) == ([], 0)  # rewound
    gate.open.clear()
    writer.submit_journaled("a:2")
    writer.submit_journaled("a:3")
    assert _lines(str(path.parent)) == ["a:2", "a:3"]
    assert path.stat().st_size == 1024 * 1024
    gate.open.set()
    assert writer.flush(timeout=30) and gate.written == ["a:1", "a:2", "a:3"]
    writer.stop()  # a graceful stop with everything written leaves no journal behind
    assert not path.exists()


def test_a_killed_processs_rewound_segment_replays_only_its_last_generation_without_the_torn_tail(
        background: Any) -> None:
    """A segment rewound after its first records were written, then given a shorter record and a line torn by
    the kill: the next writer replays that one record, exactly once; neither the older generation's lines still
    on disk behind it nor the torn line."""
    name = f"j{uuid.uuid4().hex[:6]}"
    directory = Path(background.ATRIUM_RECORD_JOURNAL_DIR)
    first = [f"a:{n}:{'x' * 200}" for n in range(3)]
    child = os.fork()
    if child == 0:
        try:
            gate = _Gate()
            gate.open.set()
            dead: BatchWriter[str] = BatchWriter(name, gate.write, string_codec())
            for item in first:
                dead.submit_journaled(item)
            assert dead.flush(timeout=30)  # written: the segment is rewound
            gate.open.clear()
            dead.submit_journaled("b:1")  # journaled, the database takes nothing more
            segment = dead._segment
            assert segment is not None
            torn = record_journal.journal_line(segment.generation, json.dumps("b:2"))
            os.pwrite(segment.fd, torn[: len(torn) // 2], segment.size)  # killed in the middle of a write
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _pid, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    files = list(directory.glob(f"{name}-*.journal"))
    assert len(files) == 1
    data = files[0].read_bytes()
    assert all(item.encode() in data for item in first[1:])  # the older generation is still on disk
    assert record_journal.journal_records(data) == ([json.dumps("b:1")], 1)
    assert _replayed_by_a_new_writer(name, files[0]) == ["b:1"]


def test_journal_lines_of_another_generation_a_bad_crc_or_zeros_are_not_records() -> None:
    line = record_journal.journal_line
    assert record_journal.journal_records(line(3, "one") + line(3, "two") + b"\0" * 64) == (["one", "two"], 0)
    assert record_journal.journal_records(line(4, "new") + line(3, "old")) == (["new"], 0)
    bad = bytearray(line(4, "three"))
    bad[-3] ^= 1
    assert record_journal.journal_records(line(4, "new") + bytes(bad) + line(4, "four")) == (["new", "four"], 1)
    assert record_journal.journal_records(b"\n" + line(3, "old")[1:]) == ([], 0)  # rewound, nothing since
    assert record_journal.journal_records(b"") == ([], 0)
    assert record_journal.journal_records(b'"plain"\n"lines"\n') == (['"plain"', '"lines"'], 0)  # older format
    assert record_journal.journal_records(line(1, "a\nb")) == (["a b"], 0)


def test_the_recorders_settings_are_read_again_when_they_change(settings: Any) -> None:
    """The recorder reads its settings once (config.settings_once), and again after a change."""
    from config.settings_once import setting_flag, setting_number

    settings.ATRIUM_RECORDER_MAX_PENDING = 7
    settings.ATRIUM_RECORDER_LEAD = False
    assert setting_number("ATRIUM_RECORDER_MAX_PENDING", 10_000) == 7
    assert setting_flag("ATRIUM_RECORDER_LEAD", True) is False
    settings.ATRIUM_RECORDER_MAX_PENDING = 9
    settings.ATRIUM_RECORDER_LEAD = True
    assert setting_number("ATRIUM_RECORDER_MAX_PENDING", 10_000) == 9
    assert setting_flag("ATRIUM_RECORDER_LEAD", True) is True

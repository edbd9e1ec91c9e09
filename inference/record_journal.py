"""The batch writer's local journal, and the types it shares with inference.recorder.

The journal (`ATRIUM_RECORD_JOURNAL_DIR`): one append-only file per process, each record a line, fsynced before
the response goes on. The process holds an exclusive lock on its file; a file whose lock is free belongs to a
process that died, and is replayed by the next writer that starts (or checks, every few seconds) and then
removed. Records still pending at a graceful stop are written, or journaled if the database does not take them.

A segment is preallocated to its full size when it is created and, once every record in it is written, rewound
(written again from its start) instead of truncated, as PostgreSQL recycles WAL segments: an fdatasync then
flushes the appended lines only, never a change of the file's size or blocks. So that a line left over from
before a rewind is never taken for a record, every line carries the segment's generation (counted up at each
rewind) and a CRC: `~<generation> <crc32> <record>` (journal_records reads them back).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Generic, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from inference import metrics

logger = logging.getLogger("inference.recorder")
T = TypeVar("T")


_settings: dict[tuple[str, object], object] = {}


def _setting(name: str, default: float) -> float:
    """A number from the settings, read once (Django's settings object costs a Python-level __getattribute__ per
    read, several reads a call); forgotten when a setting changes (override_settings, the tests' settings)."""
    value = _settings.get((name, default))
    if value is None:
        value = _settings[(name, default)] = float(getattr(settings, name, default))
    return value  # type: ignore[return-value]


def _flag(name: str, default: bool) -> bool:
    """A switch from the settings, read once as _setting."""
    value = _settings.get((name, default))
    if value is None:
        value = _settings[(name, default)] = bool(getattr(settings, name, default))
    return value  # type: ignore[return-value]


@receiver(setting_changed)
def _settings_changed(**kwargs: object) -> None:
    _settings.clear()


def journal_line(generation: int, record: str) -> bytes:
    """One journal line: `~<generation> <crc32 of the record> <record>` (the record on one line)."""
    payload = record.replace("\n", " ").encode()
    return b"~%x %08x %s\n" % (generation, zlib.crc32(payload, generation & 0xFFFFFFFF), payload)


def journal_records(data: bytes) -> tuple[list[str], int]:
    """The records a journal file holds, in order, and how many lines were torn (unreadable: killed mid-write).

    Lines are read from the start while they belong to the first line's generation: the first line that does
    not start with `~` (the rewound mark, the preallocated zeros, a leftover half line) or carries an older
    generation (a leftover line from before the last rewind) ends the journal. A line whose CRC does not match is
    torn and skipped. A file of plain lines (written before segments were preallocated) is read as it was."""
    if data[:1] not in (b"~", b"\n", b"\0", b""):  # plain lines never start with the rewound mark or zeros
        return [line.decode(errors="replace") for line in data.splitlines() if line.strip()], 0
    records: list[str] = []
    torn = 0
    generation: int | None = None
    for line in data.split(b"\n"):
        if not line.startswith(b"~"):
            break
        parts = line[1:].split(b" ", 2)
        try:
            line_generation, crc = int(parts[0], 16), int(parts[1], 16)
            payload = parts[2]
        except (IndexError, ValueError):
            torn += 1
            continue
        if generation is None:
            generation = line_generation
        elif line_generation != generation:
            break
        if zlib.crc32(payload, line_generation & 0xFFFFFFFF) != crc:
            torn += 1
            continue
        records.append(payload.decode())
    return records, torn


class Ticket:
    """One submitted record: `wait` returns True once it is committed."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = threading.Event()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()


@dataclass(eq=False)
class _Segment:
    """One file of this process's journal: records appended to it and not yet written to the database (`left`)."""

    path: str
    fd: int
    size: int = 0  # where the next line goes
    left: int = 0
    generation: int = 1  # counted up at each rewind (journal_records)


@dataclass(eq=False)
class _Pending(Generic[T]):
    item: T
    ticket: Ticket
    key: str
    attempts: int = 0
    journaled: _Segment | None = None  # the journal segment holding it, once journaled
    replay: object = None  # the journal file this record was replayed from


@dataclass
class Codec(Generic[T]):
    """How records go into the journal and come back, and which tenant (key) a record belongs to."""

    key: Callable[[T], str]
    encode: Callable[[T], str]
    decode: Callable[[str], T]


@dataclass(eq=False)
class _Replay:
    path: str
    handle: IO[bytes]
    left: int = 0
    done: bool = False
    lines: list[str] = field(default_factory=list)


class JournalMixin(Generic[T]):
    """BatchWriter's journal: appending (`journal`, `journal_first`), retiring segments once their records are
    written, replaying dead processes' files.

    Appends are cheap (a write to the page cache under a lock); making them durable is a group fsync: the first
    caller that needs its line on disk syncs everything appended so far while the others wait for it, so under
    concurrency one fdatasync serves many calls. A segment grows to ATRIUM_RECORD_JOURNAL_SEGMENT_MB, then a new
    one starts; a segment whose records are all in the database is deleted (the current one is emptied)."""

    name: str
    codec: Codec[T] | None
    _cond: threading.Condition
    _queue: deque[_Pending[T]]
    _busy: list[_Pending[T]]
    _segment: _Segment | None  # the one appended to
    _segments: list[_Segment]  # older ones with records not yet written
    _journal_lock: threading.Lock  # appends, syncs, rotation, retirement
    _replays: list[_Replay]
    _next_scan: float

    def _journal_init(self) -> None:
        self._segment = None
        self._segments = []
        self._journal_lock = threading.Lock()
        self._sync_cond = threading.Condition()
        self._appended = 0  # lines appended by this process
        self._synced = 0  # lines known to be on disk
        self._syncing = False
        self._replays = []
        self._next_scan = 0.0

    @property
    def _journal_path(self) -> str:
        return self._segment.path if self._segment is not None else ""

    def journal(self, item: T) -> None:
        """Append `item` to this process's journal and fsync it: durable across a kill of the process. Raises
        OSError when the journal cannot be written."""
        segment = self._journal_append(item)
        with self._cond:
            found = False
            for pending in (*self._busy, *self._queue):
                if pending.item is item and pending.journaled is None:
                    pending.journaled = segment
                    found = True
                    break
        if not found:  # written meanwhile (or never submitted): nothing will count it down
            self._journal_written(segment)

    def _journal_append(self, item: T) -> _Segment:
        """Append and make durable (group fsync); returns the segment holding the line."""
        if self.codec is None:
            raise RecordNotWritten("this writer has no journal")
        record = self.codec.encode(item)
        with self._journal_lock:
            segment = self._journal_segment()
            view = memoryview(journal_line(segment.generation, record))
            while view:
                written = os.pwrite(segment.fd, view, segment.size)
                segment.size += written
                view = view[written:]
            segment.left += 1
            self._appended += 1
            mine = self._appended
        self._journal_sync(mine)
        metrics.RECORDER_JOURNALED.inc()
        return segment

    def _journal_sync(self, mine: int) -> None:
        """Return once line number `mine` is on disk: sync it (and every line appended so far) or wait for the
        caller already syncing."""
        with self._sync_cond:
            while self._synced < mine:
                if self._syncing:
                    self._sync_cond.wait()
                    continue
                self._syncing = True
                try:
                    self._sync_cond.release()
                    try:
                        with self._journal_lock:  # what is appended so far; appends go on while it syncs
                            upto = self._appended
                            fd = os.dup(self._segment.fd) if self._segment is not None else -1
                        if fd >= 0:  # a duplicate: the segment may be rotated and retired meanwhile
                            try:
                                os.fdatasync(fd)
                            finally:
                                os.close(fd)
                    finally:
                        self._sync_cond.acquire()
                    self._synced = max(self._synced, upto)
                finally:
                    self._syncing = False
                    self._sync_cond.notify_all()

    def _journal_dir(self) -> str:
        return str(getattr(settings, "ATRIUM_RECORD_JOURNAL_DIR", "") or "")

    def _journal_segment(self) -> _Segment:
        """Under the journal lock: the segment to append to (a new one when the current one is full)."""
        segment = self._segment
        limit = _setting("ATRIUM_RECORD_JOURNAL_SEGMENT_MB", 8) * 1024 * 1024
        if segment is not None and segment.size >= limit:
            os.fdatasync(segment.fd)  # its lines stay covered once appends go elsewhere
            self._segments.append(segment)
            segment = self._segment = None
        if segment is None:
            directory = self._journal_dir()
            if not directory:
                raise OSError("ATRIUM_RECORD_JOURNAL_DIR is not set")
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, f"{self.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}.journal")
            # Created and locked under a name no scan replays, then renamed: a scan between the creation and the
            # lock would otherwise take the new file for a dead process's journal and delete it.
            fd = os.open(f"{path}.new", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives
                self._preallocate(fd, int(limit))
                os.rename(f"{path}.new", path)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(f"{path}.new")
                raise
            segment = self._segment = _Segment(path=path, fd=fd)
        return segment

    @staticmethod
    def _preallocate(fd: int, size: int) -> None:
        """Reserve the segment's blocks now, so appends neither grow the file nor allocate (an fdatasync then
        writes the lines only). Best effort: where the filesystem cannot, the file grows as it is appended to."""
        try:
            os.posix_fallocate(fd, 0, max(1, size))
        except OSError as exc:
            logger.info("record_journal: segments are not preallocated here (%s)", exc)

    def _journal_written(self, segment: _Segment) -> None:
        """One journaled record reached the database. A segment with nothing left is rewound (the current one)
        or deleted (an older one). Neither needs an fsync: a line that comes back after a crash is replayed, and
        replaying a written record is a no-op (its request id)."""
        with self._journal_lock:
            segment.left -= 1
            if segment.left > 0:
                return
            segment.left = 0
            if segment is self._segment:
                if segment.size:
                    # Rewound: the mark ends the journal at its start until the next line overwrites it; what
                    # follows that line is of an older generation, which journal_records does not read.
                    os.pwrite(segment.fd, b"\n", 0)
                    segment.size = 0
                    segment.generation += 1
            elif segment in self._segments:
                self._segments.remove(segment)
                with contextlib.suppress(OSError):
                    os.unlink(segment.path)
                os.close(segment.fd)

    def _journal_close(self) -> None:
        """At a graceful stop: the current segment is deleted if every record in it is written (it is replayed by
        the next process otherwise, like a killed process's)."""
        with self._journal_lock:
            segment = self._segment
            if segment is None or segment.left > 0:
                return
            self._segment = None
            with contextlib.suppress(OSError):
                os.unlink(segment.path)
            os.close(segment.fd)

    def _scan_journals(self) -> None:
        """Replay the journals of processes that died (their lock is free), each record exactly once (the
        records' idempotency keys make a second replay harmless too)."""
        if self.codec is None or time.monotonic() < self._next_scan:
            return
        self._next_scan = time.monotonic() + _setting("ATRIUM_RECORD_JOURNAL_SCAN_S", 5)
        directory = self._journal_dir()
        if not directory or not os.path.isdir(directory):
            return
        busy = {r.path for r in self._replays}
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if name.startswith(f"{self.name}-") and name.endswith(".journal.new"):
                self._drop_unborn(path)  # a process killed before its new segment got its name: it holds nothing
                continue
            if not name.startswith(f"{self.name}-") or not name.endswith(".journal") or path in busy:
                continue
            try:
                handle = open(path, "rb")  # noqa: SIM115 - held (locked) until its records are written
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live process's journal, or gone
            lines, torn = journal_records(handle.read())
            if torn:
                logger.warning("record_journal_skip: %d torn lines in %s", torn, path)
            replay = _Replay(path=path, handle=handle, left=len(lines))
            items = []
            for line in lines:
                try:
                    items.append(self.codec.decode(line))
                except Exception:
                    replay.left -= 1  # a torn last line (killed mid-write): its call was never answered
                    logger.warning("record_journal_skip: an unreadable line in %s", path)
            logger.warning("record_replay: %d call records from %s", len(items), path)
            metrics.RECORDER_REPLAYED.inc(len(items))
            with self._cond:
                for item in items:
                    self._queue.append(_Pending(item, Ticket(), self.codec.key(item), replay=replay))
                replay.done = True
                if replay.left <= 0:
                    self._replay_finish(replay)
                else:
                    self._replays.append(replay)
                self._cond.notify_all()

    @staticmethod
    def _drop_unborn(path: str) -> None:
        """A new segment never renamed (its process was killed in between) holds no record; one a minute old is
        deleted (a live process renames its own within microseconds, so a young one is left alone)."""
        with contextlib.suppress(OSError):
            if time.time() - os.stat(path).st_mtime > 60:
                os.unlink(path)

    def _replay_finish(self, replay: _Replay) -> None:
        with contextlib.suppress(OSError):
            os.unlink(replay.path)
        replay.handle.close()
        if replay in self._replays:
            self._replays.remove(replay)



class RecordNotWritten(Exception):
    """A call's records could not be written (synchronous recording) or journaled."""

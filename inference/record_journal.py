"""The batch writer's local journal (its types and settings: inference.record_types; its line format:
inference.journal_lines).

The journal (`ATRIUM_RECORD_JOURNAL_DIR`): one append-only file per process, each record a line, fsynced before
the response goes on. The process holds an exclusive lock on its file; a file whose lock is free belongs to a
process that died, and is replayed by the next writer that starts (or checks, every few seconds) and then
removed. Records still pending at a graceful stop are written, or journaled if the database does not take them.

A segment is preallocated to its full size when it is created and, once every record in it is written, rewound
(written again from its start) instead of truncated, as PostgreSQL recycles WAL segments: an fdatasync then
flushes the appended lines only, never a change of the file's size or blocks. So that a line left over from
before a rewind is never taken for a record, every line carries the segment's generation (counted up at each
rewind) and a CRC: `~<generation> <crc32> <record>` (journal_records reads them back).

A sync works on the segment's own fd, pinned (`_Segment.pins`) while it runs outside the lock: a segment retired
meanwhile is unlinked at once and its fd closed by the last write or sync holding it, never reused under it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
import uuid
from collections import deque
from typing import Generic, TypeVar

from django.conf import settings

from config.settings_once import setting_number
from inference import metrics
from inference.journal_lines import journal_line, journal_records
from inference.record_types import Codec, RecordNotWritten, Ticket, _Pending, _Replay, _Segment

logger = logging.getLogger("inference.recorder")
T = TypeVar("T")


def _lost(segment: _Segment, line: int) -> bool:
    """Does line number `line` of `segment` follow a line that could not be written into its place (a hole that
    ends the segment for a replay)?"""
    return 0 < segment.broken_at < line


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
    # A lone line is written with RWF_DSYNC (_journal_append); off where the kernel refuses it.
    _dsync = bool(getattr(os, "RWF_DSYNC", 0)) and hasattr(os, "pwritev")

    def _journal_init(self) -> None:
        self._segment = None
        self._segments = []
        self._journal_lock = threading.Lock()
        self._sync_cond = threading.Condition(self._journal_lock)  # waits for the sync in progress
        self._appended = 0  # lines appended by this process
        self._synced = 0  # lines known to be on disk
        self._journaled = 0  # lines made durable and not yet counted in the metrics (_journal_count)
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
        """Append and make durable (group fsync); returns the segment holding the line.

        When every line appended before this one is on disk and no sync is in progress (a call alone: c=1), the line
        is written with RWF_DSYNC, which puts that write's data on disk before it returns, as a write followed by an
        fdatasync would: one system call instead of two. Its place is taken under the lock and the write counts as
        the sync in progress, so lines appended meanwhile go after it and wait for it, then share one fdatasync."""
        if self.codec is None:
            raise RecordNotWritten("this writer has no journal")
        record = self.codec.encode(item)
        with self._journal_lock:
            segment = self._journal_segment()
            line = journal_line(segment.generation, record)
            offset = segment.size
            alone = self._dsync and not self._syncing and self._synced == self._appended
            if alone:
                segment.size += len(line)
                segment.pins += 1
                self._syncing = True
            else:
                self._pwrite(segment.fd, line, offset)
                segment.size += len(line)
            segment.left += 1
            self._appended += 1
            mine = self._appended
        if not alone or not self._write_synced(segment, line, offset, mine):
            self._journal_sync(mine, segment)
        return segment

    def _journal_count(self) -> None:
        """Add the lines made durable since the last call to atrium_recorder_journaled_total: the writer thread
        does, each time round its loop (about every second when idle) and at exit, so a call's request thread
        does not make that increment (an mmap write under a lock in multiprocess mode), and a batch makes one."""
        with self._journal_lock:
            count, self._journaled = self._journaled, 0
        if count:
            metrics.RECORDER_JOURNALED.inc(count)

    @staticmethod
    def _pwrite(fd: int, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            offset += written
            view = view[written:]

    def _write_synced(self, segment: _Segment, line: bytes, offset: int, mine: int) -> bool:
        """Write a lone line into its place with RWF_DSYNC: True when it is on disk; False when it is written but
        needs the fdatasync (a short write, or RWF_DSYNC refused here: not tried again)."""
        synced = False
        try:
            try:
                written = os.pwritev(segment.fd, [line], offset, os.RWF_DSYNC)
                synced = written == len(line)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                logger.info("record_journal: RWF_DSYNC is refused here (%s); fdatasync only", exc)
                JournalMixin._dsync = False
                written = 0
            if not synced:
                self._pwrite(segment.fd, line[written:], offset + written)
        except BaseException:
            with self._journal_lock:
                self._syncing = False
                self._unpin(segment)
                self._sync_cond.notify_all()
                segment.left -= 1
                if segment.size == offset + len(line):
                    segment.size = offset  # nothing appended after it: its place is given back
                else:  # lines after it would be unreadable (journal_records stops here): none of them is durable
                    segment.broken_at = mine
                    if segment is self._segment:
                        self._segments.append(segment)
                        self._segment = None
            raise
        with self._journal_lock:
            if synced:
                self._synced = max(self._synced, mine)  # every line before it was on disk already
                self._journaled += 1
            self._syncing = False
            self._unpin(segment)
            self._sync_cond.notify_all()
        return synced

    def _journal_sync(self, mine: int, segment: _Segment) -> None:
        """Return once line number `mine` (in `segment`) is on disk: sync it (and every line appended so far) or
        wait for the caller already syncing. The segment synced is pinned, not duplicated: a rotation and
        retirement meanwhile leave its fd open until the fdatasync is over (_unpin)."""
        with self._sync_cond:
            while self._synced < mine and not _lost(segment, mine):
                if self._syncing:
                    self._sync_cond.wait()
                    continue
                self._syncing = True
                upto = self._appended  # what is appended so far; appends go on while it syncs
                current = self._segment
                if current is not None:
                    current.pins += 1
                synced = False
                self._sync_cond.release()
                try:
                    if current is not None:
                        os.fdatasync(current.fd)
                    synced = True
                finally:
                    self._sync_cond.acquire()
                    if synced:
                        self._synced = max(self._synced, upto)
                    self._syncing = False
                    if current is not None:
                        self._unpin(current)
                    self._sync_cond.notify_all()
            # A later sync may cover this line's number (lines of a newer segment): its own segment decides.
            if _lost(segment, mine) or self._synced < mine:
                raise OSError(f"a line before this one in {segment.path} could not be written")
            self._journaled += 1

    def _unpin(self, segment: _Segment) -> None:
        """Under the journal lock: a write or sync of the segment's fd is over."""
        segment.pins -= 1
        if segment.pins == 0 and segment.retired:
            os.close(segment.fd)

    def _retire(self, segment: _Segment) -> None:
        """Under the journal lock: delete the segment; its fd is closed now, or by the write or sync holding it."""
        segment.retired = True
        with contextlib.suppress(OSError):
            os.unlink(segment.path)
        if segment.pins == 0:
            os.close(segment.fd)

    def _journal_dir(self) -> str:
        return str(getattr(settings, "ATRIUM_RECORD_JOURNAL_DIR", "") or "")

    def _journal_segment(self) -> _Segment:
        """Under the journal lock: the segment to append to (a new one when the current one is full)."""
        segment = self._segment
        limit = setting_number("ATRIUM_RECORD_JOURNAL_SEGMENT_MB", 8) * 1024 * 1024
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
                self._retire(segment)

    def _journal_close(self) -> None:
        """At a graceful stop: the current segment is deleted if every record in it is written (it is replayed by
        the next process otherwise, like a killed process's)."""
        with self._journal_lock:
            segment = self._segment
            if segment is None or segment.left > 0:
                return
            self._segment = None
            self._retire(segment)

    def _scan_journals(self) -> None:
        """Replay the journals of processes that died (their lock is free), each record exactly once (the
        records' idempotency keys make a second replay harmless too)."""
        if self.codec is None or time.monotonic() < self._next_scan:
            return
        self._next_scan = time.monotonic() + setting_number("ATRIUM_RECORD_JOURNAL_SCAN_S", 5)
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

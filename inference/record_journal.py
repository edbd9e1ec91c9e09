"""The batch writer's local journal, and the types it shares with inference.recorder.

The journal (`ATRIUM_RECORD_JOURNAL_DIR`): one append-only file per process, each record a line, fsynced before
the response goes on. The process holds an exclusive lock on its file; a file whose lock is free belongs to a
process that died, and is replayed by the next writer that starts (or checks, every few seconds) and then
removed. Records still pending at a graceful stop are written, or journaled if the database does not take them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Generic, TypeVar

from django.conf import settings

from inference import metrics

logger = logging.getLogger("inference.recorder")
T = TypeVar("T")


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


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
class _Pending(Generic[T]):
    item: T
    ticket: Ticket
    key: str
    attempts: int = 0
    journaled: bool = False
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
    """BatchWriter's journal: appending (`journal`), truncating once written, replaying dead processes' files."""

    name: str
    codec: Codec[T] | None
    _cond: threading.Condition
    _queue: deque[_Pending[T]]
    _busy: list[_Pending[T]]
    _journal: IO[bytes] | None
    _journal_path: str
    _journal_lock: threading.Lock
    _journaled: int  # records in this process's journal not yet written
    _replays: list[_Replay]
    _next_scan: float

    def _journal_init(self) -> None:
        self._journal = None
        self._journal_path = ""
        self._journal_lock = threading.Lock()
        self._journaled = 0
        self._replays = []
        self._next_scan = 0.0

    def journal(self, item: T) -> None:
        """Append `item` to this process's journal and fsync it: durable across a kill of the process. Raises
        OSError when the journal cannot be written."""
        if self.codec is None:
            raise RecordNotWritten("this writer has no journal")
        line = (self.codec.encode(item).replace("\n", " ") + "\n").encode()
        with self._journal_lock:
            handle = self._journal_open()
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
            self._journaled += 1
        metrics.RECORDER_JOURNALED.inc()
        with self._cond:
            found = False
            for pending in (*self._busy, *self._queue):
                if pending.item is item:
                    pending.journaled = found = True
            if not found:  # written meanwhile (or never submitted): nothing will count it down
                self._journal_written()

    def _journal_dir(self) -> str:
        return str(getattr(settings, "ATRIUM_RECORD_JOURNAL_DIR", "") or "")

    def _journal_open(self) -> IO[bytes]:
        if self._journal is None:
            directory = self._journal_dir()
            if not directory:
                raise OSError("ATRIUM_RECORD_JOURNAL_DIR is not set")
            os.makedirs(directory, exist_ok=True)
            self._journal_path = os.path.join(directory, f"{self.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}.journal")
            handle = open(self._journal_path, "ab")  # noqa: SIM115 - held open for the life of the process
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives
            self._journal = handle
        return self._journal

    def _journal_written(self) -> None:
        """One journaled record reached the database; an empty journal is truncated."""
        with self._journal_lock:
            self._journaled -= 1
            if self._journaled <= 0 and self._journal is not None:
                self._journaled = 0
                self._journal.truncate(0)
                self._journal.seek(0)
                os.fsync(self._journal.fileno())

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
            if not name.startswith(f"{self.name}-") or not name.endswith(".journal") or path == self._journal_path \
                    or path in busy:
                continue
            try:
                handle = open(path, "rb")  # noqa: SIM115 - held (locked) until its records are written
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live process's journal, or gone
            lines = [line.decode() for line in handle.read().splitlines() if line.strip()]
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

    def _replay_finish(self, replay: _Replay) -> None:
        with contextlib.suppress(OSError):
            os.unlink(replay.path)
        replay.handle.close()
        if replay in self._replays:
            self._replays.remove(replay)



class RecordNotWritten(Exception):
    """A call's records could not be written (synchronous recording) or journaled."""

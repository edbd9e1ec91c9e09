"""The types and settings the batch writer (inference.recorder) and its journal (inference.record_journal) share:
a submitted record's Ticket and queue entry, a journal segment, the Codec of records."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Generic, TypeVar

T = TypeVar("T")


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
    pins: int = 0  # writes or syncs of its fd in progress outside the journal lock: it is closed after the last
    retired: bool = False  # deleted: its fd is closed once no write or sync holds it (pins)
    broken_at: int = 0  # the number of a line that could not be written into its place: lines after it are lost


@dataclass(eq=False)
class _Pending(Generic[T]):
    item: T
    ticket: Ticket
    key: str
    attempts: int = 0
    journaled: _Segment | None = None  # the journal segment holding it, once journaled
    replay: object = None  # the journal file this record was replayed from

    @property
    def awaited(self) -> bool:
        """Whether a caller waits for this record's commit: neither journaled (durable already) nor replayed."""
        return self.journaled is None and self.replay is None


@dataclass
class Codec(Generic[T]):
    """How records go into the journal and come back, and which tenant (key) a record belongs to."""

    key: Callable[[T], str]
    encode: Callable[[T], str | bytes]  # bytes: the text's UTF-8
    decode: Callable[[str], T]


@dataclass(eq=False)
class _Replay:
    path: str
    handle: IO[bytes]
    left: int = 0
    done: bool = False
    lines: list[str] = field(default_factory=list)


class RecordNotWritten(Exception):
    """A call's records could not be written (synchronous recording) or journaled."""

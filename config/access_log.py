"""The access log's lines written in batches: a request appends its line to a buffer, and a writer thread writes what
has gathered a moment later (ATRIUM_WEB_ACCESS_LOG_FLUSH_S, 0.25 s; 0: each line at once, as before). A line each
request cost a write and a flush of the log's stream, one syscall, some 9% of a sequential call's CPU in a worker
(py-spy, issue 18); batched, a busy worker writes a few times a second.

Lines are written whole and in their order, in writes of at most PIPE_BUF (4096) bytes, so the lines of several
workers sharing one pipe (a container's stdout) never interleave (a line longer than that is written alone). At a
worker's graceful exit (config.serve's `_worker_exit`, and atexit) the buffer is written out: no line is lost. A
worker killed outright (SIGKILL, or still busy at the end of the graceful timeout) loses the lines of its last
quarter-second: the access log is a trace of traffic; the record of each call is its call record and audit trail.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import Any

PIPE_BUF = 4096  # POSIX: a write to a pipe of at most this many bytes is not interleaved with other writers'

_buffers: weakref.WeakSet[AccessBuffer] = weakref.WeakSet()


class AccessBuffer:
    """Whole lines (each ending with the handler's terminator) for one logging.StreamHandler's stream."""

    def __init__(self, handler: logging.StreamHandler[Any], interval: float) -> None:
        self.handler = handler
        self.interval = interval
        self._lines: list[str] = []
        self._lock = threading.Lock()  # the list; uncontended, taken without a syscall
        self._flushing = threading.Lock()  # one writer at a time, so batches keep their order
        self._starting = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        _buffers.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the lines buffered are the parent's to write; the locks and thread are new."""
        self._lines = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._starting = threading.Lock()
        self._wake = threading.Event()
        self._thread = None

    def add(self, line: str) -> None:
        """Buffer one whole line; the writer thread is woken by the first line of a batch only."""
        with self._lock:
            lines = self._lines
            lines.append(line)
            first = len(lines) == 1
        if first:
            if self._thread is None or not self._thread.is_alive():
                self._start()
            self._wake.set()

    def _start(self) -> None:
        with self._starting:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # a log that cannot be written must not stop the next batches
                logging.getLogger(__name__).exception("the access log could not be written")

    def flush(self) -> None:
        """Write the buffered lines now: whole, in order, in writes of at most PIPE_BUF bytes."""
        with self._flushing:
            with self._lock:
                lines, self._lines = self._lines, []
            if not lines:
                return
            handler = self.handler
            stream: Any = handler.stream
            encoding = getattr(stream, "encoding", None) or "utf-8"
            with handler.lock:  # type: ignore[union-attr]
                for chunk in chunks(lines, encoding):
                    stream.write(chunk)
                    handler.flush()


def chunks(lines: list[str], encoding: str = "utf-8") -> list[str]:
    """`lines` joined into pieces of at most PIPE_BUF bytes once encoded, each made of whole lines (a longer line
    is a piece of its own)."""
    pieces: list[str] = []
    batch: list[str] = []
    size = 0
    for line in lines:
        length = len(line) if line.isascii() else len(line.encode(encoding, "backslashreplace"))
        if batch and size + length > PIPE_BUF:
            pieces.append("".join(batch))
            batch, size = [], 0
        batch.append(line)
        size += length
    if batch:
        pieces.append("".join(batch))
    return pieces


def flush_all() -> None:
    """Write out every buffer of the process (a worker's exit)."""
    for buffer in list(_buffers):
        try:
            buffer.flush()
        except Exception:  # the other buffers still
            logging.getLogger(__name__).exception("the access log could not be written")


def _after_fork_in_child() -> None:
    for buffer in list(_buffers):
        buffer._after_fork()


atexit.register(flush_all)
os.register_at_fork(after_in_child=_after_fork_in_child)

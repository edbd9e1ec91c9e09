"""Writing finished calls' records (usage, audit entry, quota settlement) off the request thread, in batches.

A /v1 call that waited for its records would add several database round trips to its latency, and with
keep-alive even records written in the response's close() delay the next request on the connection. So the
request thread hands a finished call's record to this process's writer thread and returns. The writer waits up to
`ATRIUM_RECORDER_LINGER_MS` for more records and writes each tenant's batch in one transaction: one chain lock,
one INSERT of the audit entries, one usage upsert; then one Redis call settles every reservation of the batch.
Batching is what keeps the writer from competing with the request threads for the interpreter (each record
written on its own cost more CPU than the whole call it records: docs/benchmarks.md).

Nothing is dropped: when more than `ATRIUM_RECORDER_MAX_PENDING` records wait, the caller writes its own
(back-pressure); a batch that fails is retried record by record, so one bad record cannot lose the others; on a
graceful stop (gunicorn's SIGTERM, interpreter exit) everything pending is written first. A hard kill can lose
the records of the last linger period, the price of the latency (docs/decisions.md).
`ATRIUM_RECORD_IN_BACKGROUND=false` writes each record in the request thread instead (the test settings do).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)
T = TypeVar("T")


class BatchWriter(Generic[T]):
    """One writer thread per process that calls `write(batch)` with what `submit` handed it."""

    def __init__(self, name: str, write: Callable[[list[T]], None]) -> None:
        self.name = name
        self.write = write
        self._cond = threading.Condition()
        self._queue: deque[T] = deque()
        self._busy = 0  # records taken off the queue and not yet written
        self._pid = 0
        self._hurry = False
        atexit.register(self.flush)

    def submit(self, item: T) -> None:
        """Hand `item` to the writer (or write it here when background recording is off or the writer is full)."""
        if not getattr(settings, "ATRIUM_RECORD_IN_BACKGROUND", True):
            self._write_safely([item])
            return
        self._ensure_thread()
        with self._cond:
            if len(self._queue) + self._busy < int(getattr(settings, "ATRIUM_RECORDER_MAX_PENDING", 10_000)):
                self._queue.append(item)
                if len(self._queue) == 1 or len(self._queue) >= int(getattr(settings, "ATRIUM_RECORDER_BATCH", 500)):
                    self._cond.notify()
                return
        self._write_safely([item])  # back-pressure: the writer is saturated

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is written; False if it did not happen within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry = True  # cut a lingering batch short
            self._cond.notify_all()
            while self._queue or self._busy:
                if self._pid != os.getpid() or not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    break
            return not (self._queue or self._busy)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._cond:
            if self._pid != os.getpid():  # first use in this process (a forked worker inherits no thread)
                self._pid = os.getpid()
                self._queue.clear()
                self._busy = 0
                threading.Thread(target=self._run, name=f"atrium-{self.name}", daemon=True).start()

    def _run(self) -> None:
        linger = float(getattr(settings, "ATRIUM_RECORDER_LINGER_MS", 50)) / 1000
        limit = int(getattr(settings, "ATRIUM_RECORDER_BATCH", 500))
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                # Linger for more records, unless a full batch is waiting or flush() asks for them now.
                deadline = time.monotonic() + linger
                while len(self._queue) < limit and not self._hurry:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(timeout=remaining)
                self._hurry = False
                batch = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
                self._busy = len(batch)
            close_old_connections()
            try:
                self._write_safely(batch)
            finally:
                close_old_connections()
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()

    def _write_safely(self, batch: list[T]) -> None:
        try:
            self.write(batch)
            return
        except Exception:
            if len(batch) == 1:
                logger.exception("could not record a completed model call")
                return
            logger.warning("a batch of %d call records failed; writing them one by one", len(batch), exc_info=True)
        for item in batch:
            try:
                self.write([item])
            except Exception:
                logger.exception("could not record a completed model call")

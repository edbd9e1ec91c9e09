"""Writing finished calls' records (usage, audit entry, quota settlement) durably, in batches (group commit).

A /v1 call's response does not complete before its records are committed: the request thread hands the record to
this process's writer thread and waits for the commit of the batch that carries it (`submit` returns a Ticket;
`Ticket.wait`). The writer takes whatever records are waiting, writes each tenant's part in one transaction (one
chain lock, one INSERT of the audit entries, one usage statement) and then settles their quota reservations in
one Redis call. Concurrent calls share a commit, which is what keeps durability cheap (docs/decisions.md).

Every record carries its request id as an idempotency key (a unique constraint on the audit entry and on the
usage ledger; a settled set in Redis), so a retry is a no-op. Nothing is dropped: the part of a batch that failed
is retried with backoff until it is written (`record_retry` in the log, `atrium_recorder_retries_total`); after
a few failed attempts the records are written one by one, so one bad record cannot hold up the others. While
records of a tenant are failing, `degraded(tenant)` is true and the gateway applies the tenant's record policy:
refuse new calls before anything is sent upstream, or serve them and keep their records in the local journal.

The journal (`ATRIUM_RECORD_JOURNAL_DIR`, inference/record_journal.py): one append-only file per process, fsynced
before the response goes on, replayed by the next writer when its process died.

The writer thread is supervised: if it dies, the next submit (or the next check of `degraded`) starts a new one
with the records the dead one held (`recorder_restarted` in the log, `atrium_recorder_restarts_total`).
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
from typing import TypeVar

from django.db import close_old_connections

from config.settings_once import setting_flag, setting_number
from inference import metrics
from inference.record_journal import JournalMixin
from inference.record_types import Codec, RecordNotWritten, Ticket, _Pending, _Replay

__all__ = ["BatchWriter", "Codec", "RecordNotWritten", "Ticket"]

# The ticket of a journaled record: its caller has its answer already, nobody waits for the commit (one Event less
# per call).
_NOBODY_WAITS = Ticket()

logger = logging.getLogger(__name__)
T = TypeVar("T")


# This process's id, kept by a fork hook: os.getpid() is a system call, and the writer's supervision asks on every
# call (submit, degraded).
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class BatchWriter(JournalMixin[T]):
    """One writer thread per process: `write(batch)` writes what `submit` handed it and returns what it could not
    write (retried until written)."""

    _idle_s = 1.0  # an idle writer wakes this often for its after-commit work and the scan for dead journals

    def __init__(self, name: str, write: Callable[[list[T]], list[T]], codec: Codec[T] | None = None,
                 after: Callable[[], bool | None] | None = None,
                 lead: Callable[[list[T]], list[T] | None] | None = None) -> None:
        self.name = name
        self.write = write
        self.codec = codec
        # Leader/follower: when the writer has nothing to do, the caller writes its own record in its own thread
        # (`lead` returns what it could not write, or None when it cannot lead here); no hand-off to the writer
        # thread and back. Records that arrive meanwhile queue for the writer, which batches them.
        self.lead = lead
        self._leading = False
        self._settle_due = False
        # Work that follows a commit but must not hold the responses (quota settlement): run after each batch's
        # responses are released, every idle second, and at exit.
        self.after = after
        self._cond = threading.Condition()
        self._queue: deque[_Pending[T]] = deque()
        self._busy: list[_Pending[T]] = []  # taken off the queue by the writer, not yet written
        self._failing: dict[str, int] = {}  # key -> records of that key that failed and wait for a retry
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._hurry = False
        self._flushing = 0  # callers waiting in flush (woken when a leader is done)
        self._journal_init()
        self._after_at = 0.0
        self._batch_started = 0.0
        atexit.register(self.stop)

    # --- callers ---------------------------------------------------------------------------------------

    def submit(self, item: T) -> Ticket:
        """Hand `item` to the writer; the ticket is done once it is committed. Waits for room when the writer is
        full (back-pressure: nothing is dropped). Without background recording, writes it here and now."""
        ticket = Ticket()
        if not setting_flag("ATRIUM_RECORD_IN_BACKGROUND", True):
            if self.write([item]):
                raise RecordNotWritten("the call's records could not be written")
            ticket._done.set()
            self._after()
            return ticket
        self._ensure_thread()
        pending = _Pending(item, ticket, self.codec.key(item) if self.codec else "")
        if not self._lead(pending):
            self._enqueue(pending)
        return ticket

    def _lead(self, pending: _Pending[T]) -> bool:
        """Write `pending` in the caller's thread if the writer is idle (nothing queued, nothing being written, no
        tenant failing). True when it was handled here: written, or, if the write failed, queued for the writer's
        retries like any failed record."""
        if self.lead is None:
            return False
        with self._cond:
            if self._queue or self._busy or self._leading or self._failing:
                return False
            self._leading = True
        left: list[T] | None
        try:
            left = self.lead([pending.item])
        except Exception:
            logger.warning("record_retry: writing a call record in its request thread failed", exc_info=True)
            left = [pending.item]
        with self._cond:
            self._leading = False
            # Only what changes what the writer does wakes it: a record to retry, or a settlement owed while none
            # was (one owed already has woken it, and it settles everything committed when it runs); a flush
            # waits for the leader too.
            wake = bool(self._flushing)
            if left is None:
                if wake:
                    self._cond.notify_all()
                return False
            if left:  # not written: the writer retries it (the caller's ticket waits for that, as for any record)
                self._requeue([pending])
                metrics.RECORDER_RETRIES.inc()
                wake = True
            else:
                self._written(pending)
                wake = wake or not self._settle_due
                self._settle_due = True  # the writer settles it (quota) off this thread
            if wake:
                self._cond.notify_all()
        return True

    def submit_journaled(self, item: T) -> None:
        """Journal-first: append `item` to this process's journal and fsync it (group fsync), so it is durable
        once this returns, then hand it to the writer, which commits it to the database in the background and
        retires its journal line. Raises OSError (or RecordNotWritten) when the journal cannot be written: the
        caller then waits for the database instead."""
        self._ensure_thread()
        segment = self._journal_append(item)
        self._enqueue(_Pending(item, _NOBODY_WAITS, self.codec.key(item) if self.codec else "", journaled=segment))

    def _enqueue(self, pending: _Pending[T]) -> None:
        """Queue a record for the writer; waits for room when the writer is full (back-pressure: nothing is
        dropped)."""
        limit = int(setting_number("ATRIUM_RECORDER_MAX_PENDING", 10_000))
        with self._cond:
            while len(self._queue) + len(self._busy) >= limit > 0:
                metrics.RECORDER_BACKPRESSURE.inc()
                self._cond.wait(timeout=0.5)
            idle = not self._queue
            self._queue.append(pending)
            # The writer is woken only when this record changes what it does: it was idle (nothing queued), the
            # caller waits for the commit (it cuts a journaled linger short), or the batch is full. A journaled
            # record joining a lingering batch needs no wake-up (a futex and a GIL hand-off per call): the
            # writer takes it at the linger's end, which it waits for with a timeout.
            waits = pending.awaited
            if idle or waits or len(self._queue) >= setting_number("ATRIUM_RECORDER_BATCH", 500):
                self._cond.notify_all()

    def degraded(self, key: str) -> bool:
        """True while records of `key` (a tenant) fail to be written, or wait far longer than a commit should."""
        if setting_flag("ATRIUM_RECORD_IN_BACKGROUND", True):
            self._ensure_thread()  # supervision: a dead writer is replaced here too
        elif self._pid != os.getpid():
            return False  # records are written by the request threads: a failure raises there
        if self._failing.get(key):
            return True
        # Read without the lock (taking it costs more than the rest, and waits while the writer holds it): a
        # batch's start only moves forward and is set after the batch, so the start read first is at most as recent
        # as the true start of whatever batch is then busy; "not stuck" from it holds, "stuck" is confirmed below.
        started = self._batch_started
        if not self._busy:  # nothing being written
            return False
        stuck = setting_number("ATRIUM_RECORD_COMMIT_WAIT_MS", 3000) / 1000
        if time.monotonic() - started <= stuck:
            return False
        with self._cond:
            return bool(self._busy) and time.monotonic() - self._batch_started > stuck

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is written; False if it did not happen within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry = True  # cut a lingering batch short
            self._cond.notify_all()
            self._flushing += 1
            try:
                while self._queue or self._busy or self._leading:
                    if self._pid != os.getpid() or not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                        break
            finally:
                self._flushing -= 1
            return not (self._queue or self._busy or self._leading)

    def stop(self) -> None:
        """At exit: write what is pending; journal what the database would not take in time; then the writer's
        after-commit work (quota settlements still owed)."""
        if self._pid != os.getpid():
            return
        if (self._queue or self._busy) and not self.flush(timeout=setting_number("ATRIUM_RECORDER_STOP_WAIT_S", 20)) \
                and self.codec is not None:
            with self._cond:
                left = [p for p in (*self._busy, *self._queue) if p.awaited]
            for pending in left:
                try:
                    self.journal(pending.item)
                except Exception:
                    logger.exception("record_lost: a call record could be neither written nor journaled at exit")
        # The after-commit work (quota settlements of written records) is retried until it goes through: after a
        # Redis restart the first attempt meets a dead pooled connection, and what is not settled at exit is
        # missing from the counters until their next rebuild.
        deadline = time.monotonic() + setting_number("ATRIUM_RECORDER_STOP_WAIT_S", 20)
        while not self._after() and time.monotonic() < deadline:
            time.sleep(0.2)
        self._journal_count()
        self._journal_close()

    def _after(self) -> bool:
        """Run the after-commit work; False if some of it is left (it failed and waits for the next run)."""
        self._after_at = time.monotonic()
        if self.after is None:
            return True
        try:
            return self.after() is not False
        except Exception:
            logger.exception("the %s writer's after-commit work failed", self.name)
            return False

    # --- the writer thread --------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._pid == _pid and self._thread is not None and self._thread.is_alive():
            return
        with self._cond:
            if self._pid != os.getpid():  # first use in this process (a forked worker inherits no thread)
                self._pid = os.getpid()
                self._queue.clear()
                self._busy = []
                self._failing = {}
                self._journal_init()  # a forked worker starts its own journal
                self._leading = self._settle_due = False
                self._flushing = 0
            elif self._thread is not None and not self._thread.is_alive():
                # The writer died: what it held goes back to the front of the queue, and a new writer starts.
                self._queue.extendleft(reversed(self._busy))
                self._busy = []
                metrics.RECORDER_RESTARTS.inc()
                logger.error("recorder_restarted: the %s writer thread had died; a new one takes its %d records",
                             self.name, len(self._queue))
            elif self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"atrium-{self.name}", daemon=True)
            self._thread.start()

    def start(self) -> None:
        """Start the writer now (a web worker at boot), which also replays journals of processes that died."""
        if setting_flag("ATRIUM_RECORD_IN_BACKGROUND", True):
            self._ensure_thread()

    def _take(self) -> list[_Pending[T]]:
        linger = setting_number("ATRIUM_RECORDER_LINGER_MS", 0) / 1000
        limit = int(setting_number("ATRIUM_RECORDER_BATCH", 500))
        with self._cond:
            while not self._queue:
                if self._settle_due:  # records written by their callers (leaders) wait for their settlement
                    # Settled together, at most every ATRIUM_RECORDER_SETTLE_EVERY_S as after the writer's own
                    # commits, rather than one wake-up and one Redis call per leader (at c=1 that was ~0.12 ms of
                    # this thread's CPU and four context switches a call, beside the next call's request thread).
                    wait = self._after_at + setting_number("ATRIUM_RECORDER_SETTLE_EVERY_S", 0.05) - time.monotonic()
                    if wait <= 0:
                        self._settle_due = False
                        return []
                    self._cond.wait(timeout=wait)
                    continue
                if not self._cond.wait(timeout=self._idle_s):
                    return []
            # Records already durable in the journal have nobody waiting for them: gather a larger batch (fewer
            # transactions, less CPU per record), until one arrives whose caller waits for its commit.
            # A caller waiting for its commit cuts the journaled linger back to the configured one (which it
            # was told to wait, ATRIUM_RECORDER_LINGER_MS), never shorter: group commit still gathers callers.
            start = time.monotonic()
            commit_deadline = deadline = start + linger
            if not self._waiting():
                deadline = start + max(linger, setting_number("ATRIUM_RECORDER_JOURNALED_LINGER_MS", 50) / 1000)
            while len(self._queue) < limit and not self._hurry:
                if deadline > commit_deadline and self._waiting():
                    deadline = commit_deadline
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(timeout=remaining)
            self._hurry = False
            batch = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            self._busy = batch
            self._batch_started = time.monotonic()
            return batch

    def _waiting(self) -> bool:
        """Under the condition: does a caller wait for a queued record's commit (one not journaled)?"""
        return any(p.awaited for p in self._queue)

    def _run(self) -> None:
        backoff = 0.05
        while True:
            self._scan_journals()
            self._journal_count()
            batch = self._take()
            if not batch:
                self._after()
                continue
            close_old_connections()
            try:
                failed = self._write(batch)
            finally:
                close_old_connections()
            with self._cond:
                self._requeue(failed)
                self._busy = []
                not_written = {id(p) for p in failed}
                for pending in batch:
                    if id(pending) not in not_written:
                        self._written(pending)
                self._cond.notify_all()
            if failed:
                metrics.RECORDER_RETRIES.inc(len(failed))
                logger.warning("record_retry: %d call records not written yet; retrying in %.2f s", len(failed),
                               backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            else:
                backoff = 0.05
            # The after-commit work (quota settlement, a Redis round trip) must not hold up the next batch's
            # commit, which calls are waiting for: while records wait, it runs at most every SETTLE_EVERY_S.
            with self._cond:
                waiting = bool(self._queue)
            settle_every = setting_number("ATRIUM_RECORDER_SETTLE_EVERY_S", 0.05)
            if not waiting or time.monotonic() - self._after_at >= settle_every:
                self._after()

    def _requeue(self, failed: list[_Pending[T]]) -> None:
        """Under the condition: records not written go back to the front of the queue, in order; a record failing
        for the first time marks its tenant as failing (`degraded`) until it is written."""
        for pending in failed:
            pending.attempts += 1
            if pending.attempts == 1:
                self._failing[pending.key] = self._failing.get(pending.key, 0) + 1
        self._queue.extendleft(reversed(failed))

    def _write(self, batch: list[_Pending[T]]) -> list[_Pending[T]]:
        """Write the batch; returns what is not written. After repeated failures, one record at a time."""
        if len(batch) > 1 and max(p.attempts for p in batch) >= 3:
            return [p for p in batch if self._write([p])]
        by_item = {id(p.item): p for p in batch}
        try:
            left = self.write([p.item for p in batch])
        except Exception:
            logger.warning("record_retry: writing %d call records failed", len(batch), exc_info=True)
            return batch
        return [by_item[id(item)] for item in left]

    def _written(self, pending: _Pending[T]) -> None:
        """Under the condition: the record is committed."""
        if pending.attempts:
            count = self._failing.get(pending.key, 0) - 1
            if count > 0:
                self._failing[pending.key] = count
            else:
                self._failing.pop(pending.key, None)
        if pending.journaled is not None:
            self._journal_written(pending.journaled)  # before the ticket: whoever waits sees the journal emptied
        pending.ticket._done.set()
        if isinstance(pending.replay, _Replay):
            replay = pending.replay
            replay.left -= 1
            if replay.left <= 0 and replay.done:
                self._replay_finish(replay)

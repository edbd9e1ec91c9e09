"""Writing a finished call's records (usage, audit entry, quota settlement) off the request thread.

With keep-alive, a record written in the response's close() still delays the next request on the same
connection; handing it to a small per-process thread pool does not. The pool is bounded: when it is full the
record is written in the caller's thread (back-pressure, nothing dropped). On a graceful stop (gunicorn's
SIGTERM, interpreter exit) pending records are written before the process ends; a hard kill can lose the
records of the last few milliseconds of calls, which is the price of the latency (docs/decisions.md).
`ATRIUM_RECORD_IN_BACKGROUND=false` writes them synchronously instead (the test settings do).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_pending: set[Future[None]] = set()


class _Pool:
    """The thread pool and the semaphore that bounds what may wait in it, created together on first use."""

    def __init__(self) -> None:
        threads = int(getattr(settings, "ATRIUM_RECORDER_THREADS", 4))
        self.slots = threading.BoundedSemaphore(threads * 64)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="atrium-recorder")
        atexit.register(recorder_flush)

    def run(self, work: Callable[[], None]) -> None:
        close_old_connections()
        try:
            _safe(work)
        finally:
            close_old_connections()
            self.slots.release()


_pool: _Pool | None = None


def _get_pool() -> _Pool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Pool()
        return _pool


def record_later(work: Callable[[], None]) -> None:
    """Run `work` in the recorder pool (or right here when background recording is off or the pool is full)."""
    if not getattr(settings, "ATRIUM_RECORD_IN_BACKGROUND", True):
        _safe(work)
        return
    pool = _get_pool()
    if not pool.slots.acquire(blocking=False):
        _safe(work)  # back-pressure: the pool is saturated
        return
    future = pool.executor.submit(pool.run, work)
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _lock:
        _pending.discard(future)


def _safe(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:
        logger.exception("could not record a completed model call")


def recorder_flush(timeout: float = 30.0) -> None:
    """Wait until every record handed over so far is written."""
    with _lock:
        pending = list(_pending)
    for future in pending:
        try:
            future.result(timeout=timeout)
        except Exception:
            logger.exception("a pending record did not complete")

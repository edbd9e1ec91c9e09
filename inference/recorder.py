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
_pool: ThreadPoolExecutor | None = None
_pending: set[Future[None]] = set()
_slots = threading.BoundedSemaphore(1)  # replaced with the configured size on first use


def _run(work: Callable[[], None]) -> None:
    close_old_connections()
    try:
        work()
    except Exception:
        logger.exception("could not record a completed model call")
    finally:
        close_old_connections()
        _slots.release()


def _executor() -> ThreadPoolExecutor:
    global _pool, _slots
    with _lock:
        if _pool is None:
            threads = int(getattr(settings, "ATRIUM_RECORDER_THREADS", 4))
            _slots = threading.BoundedSemaphore(threads * 64)
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="atrium-recorder")
            atexit.register(recorder_flush)
        return _pool


def record_later(work: Callable[[], None]) -> None:
    """Run `work` in the recorder pool (or right here when background recording is off or the pool is full)."""
    if not getattr(settings, "ATRIUM_RECORD_IN_BACKGROUND", True):
        _safe(work)
        return
    pool = _executor()
    if not _slots.acquire(blocking=False):
        _safe(work)  # back-pressure: the pool is saturated
        return
    future = pool.submit(_run, work)
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

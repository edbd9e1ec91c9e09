"""Opening a provider stream under a time-to-first-byte budget, with optional hedging.

Without hedging, an attempt on a client whose transport can hold the first event to a deadline by itself (the
Anthropic API's direct path: its socket timeouts end every read by the budget's end) runs in the request's own
thread: no hand-off to another thread and back, which cost a c=1 call more than the upstream round trip itself
(docs/benchmarks.md). Its outcomes are the pool's: a first event in time wins, an error fails over, and a budget
that ran out leaves the attempt pending, so the loop below gives up on it exactly as on a pooled attempt.

Any other attempt runs in a thread of a shared pool (building the client, opening the stream, reading its first
event); the request's thread waits for the first attempt to produce an event, its budget to pass, the hedging
delay, or the request's deadline, whichever comes first. An attempt given up on (too slow, or beaten by a hedged
one) is cancelled: its thread closes the stream the moment the provider answers, so its answer is never read,
relayed, billed to the tenant or recorded. Only the winner's events go further.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anthropic
from django.conf import settings

from config.settings_once import setting
from inference.providers.base import (
    Limits,
    bounds_first_event,
    provider_client,
    provider_client_ready,
    provider_stream,
)
from inference.streaming import close_quietly
from inference.types import ProviderTarget

if TYPE_CHECKING:
    from inference.router import Walk

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.ATRIUM_ATTEMPT_THREADS, thread_name_prefix="attempt")
        return _pool


def executor_prestart(threads: int = 8) -> None:
    """Start some of the pool's threads now (process start, inference.warm) rather than in a request."""
    pool = _executor()
    for future in [pool.submit(time.sleep, 0.01) for _ in range(min(threads, settings.ATRIUM_ATTEMPT_THREADS))]:
        future.result()


def _forget_pool() -> None:  # a forked child (gunicorn worker, Celery prefork) gets its own pool
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


# A socket timeout may end a hair before the monotonic clock reaches the moment it was set for.
_CLOCK_SLACK_S = 0.005


class Cancelled(Exception):
    """The attempt was given up on before its provider answered."""


class Outcome:
    """How an attempt run in the request's own thread ended, read as open_first reads a pooled attempt's Future
    (`done()`, `exception()`): a Future's lock and condition, and a wait() on what has already ended, cost more
    than the rest of the attempt's bookkeeping."""

    __slots__ = ("_exception",)

    def __init__(self, exception: BaseException | None = None) -> None:
        self._exception = exception

    def done(self) -> bool:
        return True

    def exception(self) -> BaseException | None:
        return self._exception


@dataclass(eq=False)
class Opened:
    """An attempt under way, and once it succeeded: its stream, first event and the rest of the events."""

    target: ProviderTarget
    model_id: str
    admission: int
    t0: float
    budget: float
    betas: tuple[str, ...] = ()
    stream: Any = None
    first: Any = None
    iterator: Iterator[Any] = field(default_factory=lambda: iter(()))
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    future: Future[Opened] | Outcome | None = None

    # When the request went out: the budget counts from here, not from building the client or renewing its
    # credentials (an STS or Google token call is not the provider being slow; both normally happened at process
    # start, inference.warm). Set by the attempt's thread; until then the budget counts from t0.
    sent: float | None = None

    @property
    def first_byte_by(self) -> float:
        return (self.sent if self.sent is not None else self.t0) + self.budget

    def run(self, params: Mapping[str, Any], timeout: anthropic.Timeout | Limits, *, client: Any = None,
            deadline: float | None = None) -> Opened:
        """Open the stream and read its first event (or raise what the provider did); in a pool thread, or in the
        request's with `deadline` (the first event must then arrive by the budget's end or `deadline`)."""
        stream = None
        try:
            client = client if client is not None else provider_client(self.target)
            self.sent = time.monotonic()
            by = None if deadline is None else min(self.first_byte_by, deadline)
            stream = provider_stream(client, model_id=self.model_id, params=params, timeout=timeout,
                                     betas=self.betas, first_event_by=by)
            iterator = iter(stream)
            first = next(iterator)
        except StopIteration:
            close_quietly(stream)
            raise anthropic.APIConnectionError(request=None, message="empty stream") from None  # type: ignore[arg-type]
        except BaseException:
            close_quietly(stream)
            raise
        with self.lock:
            if self.cancelled:
                close_quietly(stream)
                raise Cancelled
            self.stream, self.first, self.iterator = stream, first, iterator
        return self

    def run_here(self, params: Mapping[str, Any], deadline: float) -> None:
        """Run the attempt in this (the request's) thread if its client is ready (built, credentials current) and
        bounds its first event, else submit it to the pool, which builds or renews the client off this thread as
        before. Either way `future` holds the outcome (an Outcome here), except for a first event that did not
        arrive by the budget's end (or `deadline`): then it is a Future that stays pending, and open_first gives up
        on it as on any slow one."""
        client = provider_client_ready(self.target)
        if client is None or not bounds_first_event(client):
            self.future = _executor().submit(contextvars.copy_context().run, self.run, params, _timeout(deadline))
            return
        try:
            remaining = max(deadline - time.monotonic(), 0.001)
            limits = Limits(remaining, min(setting("ATRIUM_CONNECT_TIMEOUT_S"), remaining))  # as _timeout's
            self.run(params, limits, client=client, deadline=deadline)
            self.future = Outcome()
        except anthropic.APITimeoutError as exc:
            # Out of time (not, say, a connect timeout shorter than the budget): a slow attempt, not a failed one.
            if time.monotonic() < min(self.first_byte_by, deadline) - _CLOCK_SLACK_S:
                self.future = Outcome(exc)
            else:
                self.future = Future()
        except Exception as exc:
            self.future = Outcome(exc)

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            stream, self.stream = self.stream, None
        close_quietly(stream)


def _timeout(deadline: float) -> anthropic.Timeout:
    remaining = max(deadline - time.monotonic(), 0.001)
    return anthropic.Timeout(remaining, connect=min(setting("ATRIUM_CONNECT_TIMEOUT_S"), remaining))


def open_first(walk: Walk, params: Mapping[str, Any], budget_of: Callable[[ProviderTarget], float]) -> Opened:
    """The first attempt to produce an event. Raises UpstreamRequestError (a caller error, which ends the walk),
    ModelNotFound or ProviderUnavailable (no target left, or the deadline passed)."""
    running: list[Opened] = []
    last_start = 0.0

    def start() -> bool:
        nonlocal last_start
        candidate = walk.next_candidate()
        if candidate is None:
            return False
        target, model_id, admission = candidate
        now = time.monotonic()
        op = Opened(target, model_id, admission, now, budget_of(target), betas=walk.request.betas)
        running.append(op)
        if walk.hedge_delay_s is None:  # one attempt at a time: in this thread when its transport allows
            op.run_here(params, walk.deadline)
        else:
            # In the request's context (its trace; contextvars), so the attempt's HTTP spans join the call's trace.
            op.future = _executor().submit(contextvars.copy_context().run, op.run, params, _timeout(walk.deadline))
        last_start = now
        return True

    def give_up_all() -> None:
        for op in running:
            op.cancel()
        running.clear()

    try:
        while True:
            now = time.monotonic()
            if now >= walk.deadline:
                for op in running:
                    walk.slow(op.target, op.model_id, None, op.t0)
                give_up_all()
                raise walk.exhausted(deadline=True)
            if not running:
                if not start():
                    raise walk.exhausted()
                op = running[0]
                if type(op.future) is Outcome:  # run in this thread, and ended: alone, so nothing to wait for
                    running.clear()
                    exc = op.future.exception()
                    if exc is None:
                        return op
                    walk.failed(op.target, op.model_id, exc, op.t0)  # raises on a caller error
                    continue
                now = time.monotonic()  # an attempt run in this thread has already taken its time
            wake = min([walk.deadline, *(op.first_byte_by for op in running)])
            can_hedge = walk.hedge_delay_s is not None and walk.position < len(walk.targets)
            if can_hedge:
                wake = min(wake, last_start + walk.hedge_delay_s)  # type: ignore[operator]
            futures = [op.future for op in running if op.future is not None]
            if not any(future.done() for future in futures):  # an attempt run in this thread has ended already
                wait(futures, timeout=max(wake - now, 0), return_when=FIRST_COMPLETED)  # type: ignore[arg-type]
            for op in [op for op in running if op.future is not None and op.future.done()]:
                running.remove(op)
                exc = op.future.exception()  # type: ignore[union-attr]
                if exc is None:
                    for other in running:
                        walk.cancelled(other.target, other.model_id, other.t0)
                    give_up_all()
                    return op
                walk.failed(op.target, op.model_id, exc, op.t0)  # raises on a caller error
            now = time.monotonic()
            for op in [op for op in running if now >= op.first_byte_by]:
                running.remove(op)
                op.cancel()
                walk.slow(op.target, op.model_id, op.budget, op.t0)
            if can_hedge and running and now - last_start >= walk.hedge_delay_s:  # type: ignore[operator]
                start()
    except BaseException:
        give_up_all()
        raise

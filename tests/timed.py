"""`timed`: run a call that is expected to time out (or answer) in a thread, and say how long it took; for tests of
timeouts, which compare the time taken with the bound as ratios, never with a wall-clock limit of their own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

GUARD = 120.0  # seconds a thread may take before the test calls it hung (hundreds of times every bound tested)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """(what `call` returned or raised, seconds it took), run in a thread joined with GUARD."""
    outcome: list[Any] = []

    def run() -> None:
        started = time.monotonic()
        try:
            result: Any = call()
        except Exception as exc:  # the outcome under test
            result = exc
        outcome.append((result, time.monotonic() - started))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(GUARD)
    assert outcome, "the call hung"
    return outcome[0]

"""At exit (a graceful stop), the writer's after-commit work (the quota settlements of written records) is retried
until it goes through: after a Redis restart the first attempt meets a dead pooled connection, and a settlement
left undone at exit would be missing from the quota counters until their next rebuild."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from inference.recorder import BatchWriter


def test_the_after_commit_work_is_retried_at_exit_until_it_goes_through(background: Any) -> None:
    background.ATRIUM_RECORDER_STOP_WAIT_S = 30
    written: list[int] = []
    attempts: list[bool] = []

    def after() -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # the writer thread's runs meet Redis down too
        attempts.append(True)
        if len(attempts) < 3:
            raise ConnectionError("Redis restarted: the pooled connection is gone")
        return True

    writer: BatchWriter[int] = BatchWriter(f"x{uuid.uuid4().hex[:6]}", lambda batch: written.extend(batch) or [],
                                           after=after)
    assert writer.submit(1).wait(30)
    writer.stop()
    assert written == [1]
    assert len(attempts) == 3  # two failures, then the settlement that went through


def test_work_left_undone_is_reported_and_stop_gives_up_at_its_deadline(background: Any) -> None:
    background.ATRIUM_RECORDER_STOP_WAIT_S = 0.5
    calls: list[bool] = []
    redis_back: list[bool] = []

    def after() -> bool:
        if threading.current_thread() is threading.main_thread():
            calls.append(True)
        return bool(redis_back)  # until then, some settlements are still waiting (Redis down)

    writer: BatchWriter[int] = BatchWriter(f"x{uuid.uuid4().hex[:6]}", lambda batch: [], after=after)
    assert writer.submit(1).wait(30)
    writer.stop()
    assert 2 <= len(calls) <= 10  # retried, then it stopped trying at the deadline
    redis_back.append(True)  # (the process's own exit runs stop again)

"""inference/catalog/snapshot.py: one thread reloads an expired snapshot while the others keep answering from it
(issue 18, the c=32 tail); a forgotten snapshot (an edit) is never answered from."""

from __future__ import annotations

import threading
import time
from typing import Any

from inference.catalog.snapshot import CatalogSnapshot


def test_an_expired_snapshot_answers_the_other_threads_while_one_reloads_it(settings: Any) -> None:
    settings.ATRIUM_CATALOG_CACHE_S = 0.05
    loads: list[str] = []
    release = threading.Event()

    def load() -> str:
        loads.append("load")
        if len(loads) > 1:
            release.wait(5)  # the reload is slow: nobody else may queue behind it
        return f"v{len(loads)}"

    snapshot = CatalogSnapshot(load)
    assert snapshot.current() == "v1"
    time.sleep(0.1)
    reloader = threading.Thread(target=snapshot.current)
    reloader.start()
    deadline = time.monotonic() + 5
    while len(loads) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.monotonic()
    answers = [snapshot.current() for _ in range(5)]
    waited = time.monotonic() - started
    release.set()
    reloader.join(5)
    assert answers == ["v1"] * 5 and len(loads) == 2
    assert waited < 1.0  # not behind the reload (which waits up to 5 s)
    assert snapshot.current() == "v2"


def test_a_forgotten_snapshot_is_not_answered_and_a_load_begun_before_is_not_kept(settings: Any) -> None:
    settings.ATRIUM_CATALOG_CACHE_S = 60
    snapshot: CatalogSnapshot[str] = CatalogSnapshot(lambda: "unused")
    state = {"calls": 0}

    def load() -> str:
        state["calls"] += 1
        if state["calls"] == 1:
            snapshot.forget()  # an edit commits while the tables are read
            return "before the edit"
        return "after the edit"

    snapshot._load = load
    assert snapshot.current() == "before the edit"  # the caller that read it gets it
    assert snapshot.current() == "after the edit"  # but it was not kept
    snapshot.forget()
    assert snapshot._value is None

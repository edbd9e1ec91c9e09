"""In-process A/B microbenchmark of BatchWriter.degraded, the check every /v1/messages call makes
(inference.records.records_available), with the writer thread running as in a server.

    .venv/bin/python bench/degraded_micro.py BASELINE_RECORDER_PY [N]

BASELINE_RECORDER_PY: the baseline's inference/recorder.py (e.g. `git show <commit>:inference/recorder.py`),
loaded beside this tree's; old and new writers are asked in turn (old, new, new, old...), N calls each per round,
30 rounds, in two states: idle (no batch being written) and busy (a batch started just now). Prints the median
CPU per call (thread_time_ns).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
from _common import module_from_file


def main() -> None:
    import django

    django.setup()
    from django.test import override_settings

    override_settings(ATRIUM_RECORD_IN_BACKGROUND=True).enable()
    from inference import recorder

    old = module_from_file("baseline_recorder", sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    writers = {"old": old.BatchWriter("old", lambda batch: []), "new": recorder.BatchWriter("new", lambda batch: [])}
    for w in writers.values():
        w.degraded("bench")  # starts its thread

    def timed(w: Any) -> float:
        start = time.thread_time_ns()
        for _ in range(n):
            w.degraded("bench")
        return (time.thread_time_ns() - start) / n

    for state in ("idle", "busy"):
        for w in writers.values():
            w._busy = [object()] if state == "busy" else []  # the writer's own batch is empty: it sleeps
            w._batch_started = time.monotonic()
        runs: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(30):
            for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
                runs[name].append(timed(writers[name]))
        assert not any(w.degraded("bench") for w in writers.values())
        print(f"degraded, {state}: old {statistics.median(runs['old']):6.0f} ns  new "
              f"{statistics.median(runs['new']):6.0f} ns")


if __name__ == "__main__":
    main()

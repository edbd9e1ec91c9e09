"""inference.metrics: in multiprocess mode prometheus_client's values take the process id from a value cached per
process (renewed in a forked child) instead of calling os.getpid at every inc; a forked child still writes its
own files, as before. Run in a fresh interpreter: the value class is chosen before any metric exists."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from tests.conftest import ROOT

CHILD = r"""
import os, sys
from prometheus_client import values
import inference.metrics as m
assert values.ValueClass is not None
calls = []
real = os.getpid
os.getpid = lambda: calls.append(1) or real()
for _ in range(100):
    m.RECORDER_RETRIES.inc()
    m.LATENCY.labels("t", "s").observe(0.01)
os.getpid = real
assert calls == [], f"{len(calls)} getpid calls for 200 updates"
pid = os.fork()
if pid == 0:
    m.RECORDER_RETRIES.inc(5)  # the child's own file
    os._exit(0)
os.waitpid(pid, 0)
from prometheus_client import CollectorRegistry, multiprocess
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
value = registry.get_sample_value("atrium_recorder_retries_total")
files = sorted(name for name in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]) if name.startswith("counter_"))
print(value, len(files), f"counter_{pid}.db" in files, f"counter_{os.getpid()}.db" in files)
"""


def test_values_ask_no_pid_per_update_and_a_fork_still_gets_its_own_files(tmp_path: Any) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["105.0", "2", "True", "True"]

"""Prometheus metrics, labelled by tenant. Served at /metrics (config.metrics_view).

Under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR (docs/deployment.md) so the numbers of every
worker are summed; without it each process reports its own.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import Counter, Histogram, values

# In multiprocess mode (PROMETHEUS_MULTIPROC_DIR) every inc, set and observe of prometheus_client's values asks the
# kernel for the process id (os.getpid, to notice a fork and open the child's own files): some six getpid calls a
# gateway call, each a syscall, expensive under gVisor (strace -c, issue 18). Here the id is asked once and again
# in each forked child (os.register_at_fork), which is when it changes; the values notice a fork exactly as before.
_pid = os.getpid()


def _process_pid() -> int:
    return _pid


def _pid_after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_pid_after_fork)


def _values_with_cached_pid() -> None:
    """Make prometheus_client's multiprocess values take the process id from `_process_pid`, before any metric has
    a value; if one has (another module made a metric first), keep the default: two value classes would map the same
    file twice."""
    default: Any = values.ValueClass
    if not getattr(default, "_multiprocess", False):
        return
    try:
        reset = default._MmapedValue__reset
        cells = dict(zip(reset.__code__.co_freevars, reset.__closure__, strict=True))
        if cells["files"].cell_contents:
            return
    except (AttributeError, KeyError, TypeError, ValueError):
        return
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_pid)  # type: ignore[no-untyped-call]


_values_with_cached_pid()

REQUESTS = Counter("atrium_model_requests_total", "Model calls through the gateway",
                   ["tenant", "source", "status"])
LATENCY = Histogram("atrium_model_request_seconds", "Model call latency (to the last byte)", ["tenant", "source"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
TOKENS = Counter("atrium_tokens_total", "Tokens used", ["tenant", "direction"])
FAILOVERS = Counter("atrium_failovers_total", "Attempts that failed over to the next provider target",
                    ["tenant", "target"])
QUOTA_REFUSALS = Counter("atrium_quota_refusals_total", "Requests refused by a quota", ["tenant", "limit"])
POLICY_REFUSALS = Counter("atrium_policy_refusals_total", "Requests refused by the access policy or consent",
                          ["tenant", "reason"])
RECORDER_RETRIES = Counter("atrium_recorder_retries_total", "Call records whose write failed and is retried")
RECORDER_RESTARTS = Counter("atrium_recorder_restarts_total", "Record writer threads found dead and restarted")
RECORDER_JOURNALED = Counter("atrium_recorder_journaled_total",
                             "Call records fsynced to the local journal (serve_and_journal tenants' durability point, "
                             "or kept there because the database did not take them in time)")
RECORDER_JOURNAL_FAILURES = Counter("atrium_recorder_journal_failures_total",
                                    "Call records the local journal could not take (the call waited for the database)")
RECORDER_REPLAYED = Counter("atrium_recorder_replayed_total", "Call records replayed from a dead process's journal")
RECORDER_BACKPRESSURE = Counter("atrium_recorder_backpressure_total",
                                "Times a request waited for room in a full record writer")
RECORDS_REFUSED = Counter("atrium_records_unavailable_total",
                          "Calls refused (503) because their records could not be made durable", ["tenant"])

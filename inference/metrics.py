"""Prometheus metrics, labelled by tenant. Served at /metrics (config.metrics_view).

Under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR (docs/deployment.md) so the numbers of every
worker are summed; without it each process reports its own.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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

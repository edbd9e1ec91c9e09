"""Settings: streaming the audit trails to a SIEM as they are written (audit/siem/, docs/siem.md). Imported by
base.py."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.env import env

# How often beat runs the streamer (each run sends what every destination has not acknowledged yet).
ATRIUM_SIEM_INTERVAL_S = env.float("ATRIUM_SIEM_INTERVAL_S", default=5.0)
ATRIUM_SIEM_BATCH = env.int("ATRIUM_SIEM_BATCH", default=500)  # entries per syslog connection or webhook POST
ATRIUM_SIEM_MAX_BATCHES = env.int("ATRIUM_SIEM_MAX_BATCHES", default=20)  # per destination and run, then the next
# Connect, send and acknowledgement timeout of one batch (the destination's cursor row stays locked meanwhile).
ATRIUM_SIEM_TIMEOUT_S = env.float("ATRIUM_SIEM_TIMEOUT_S", default=10.0)
# A webhook answering 5xx, 408, 429 or not answering is retried this many times within a run, after
# ATRIUM_SIEM_RETRY_BACKOFF_S, then twice that, ...
ATRIUM_SIEM_HTTP_RETRIES = env.int("ATRIUM_SIEM_HTTP_RETRIES", default=2)
ATRIUM_SIEM_RETRY_BACKOFF_S = env.float("ATRIUM_SIEM_RETRY_BACKOFF_S", default=0.5)
# After a failed run a destination waits before the next attempt: interval x 2^(failures-1), at most this long.
ATRIUM_SIEM_FAILURE_BACKOFF_MAX_S = env.float("ATRIUM_SIEM_FAILURE_BACKOFF_MAX_S", default=300.0)
ATRIUM_SIEM_SYSLOG_FACILITY = env.int("ATRIUM_SIEM_SYSLOG_FACILITY", default=13)  # 13: log audit (RFC 5424)
ATRIUM_SIEM_SYSLOG_HOSTNAME = env.str("ATRIUM_SIEM_SYSLOG_HOSTNAME", default="")  # empty: this host's name

# The operator's destination: receives every trail (each tenant's and the platform's), whatever the platform admin
# configures besides. Trusted (from the environment): not limited to public addresses. Same URL forms as the admin's.
ATRIUM_SIEM_URL = env.str("ATRIUM_SIEM_URL", default="")
ATRIUM_SIEM_SECRET = env.str("ATRIUM_SIEM_SECRET", default="")  # webhook HMAC key
ATRIUM_SIEM_CA_FILE = env.str("ATRIUM_SIEM_CA_FILE", default="")  # PEM bundle instead of the system's CAs
ATRIUM_SIEM_VERIFY_TLS = env.bool("ATRIUM_SIEM_VERIFY_TLS", default=True)
ATRIUM_SIEM_BACKFILL = env.bool("ATRIUM_SIEM_BACKFILL", default=True)  # new chains from their first entry
# Every process (web, worker, beat) refuses to start with an operator destination it could not use, rather than
# logging an error every few seconds while the trail goes nowhere.
_scheme = ATRIUM_SIEM_URL.split("://", 1)[0] if "://" in ATRIUM_SIEM_URL else ""
if ATRIUM_SIEM_URL and _scheme not in ("https", "syslog", "syslog+tcp", "syslog+tls"):
    raise ImproperlyConfigured("atrium: ATRIUM_SIEM_URL must be https://…, syslog+tls://host:port or "
                               "syslog://host:port")
if _scheme == "https" and not ATRIUM_SIEM_SECRET:
    raise ImproperlyConfigured("atrium: ATRIUM_SIEM_URL is a webhook; set ATRIUM_SIEM_SECRET (its signing key)")

# The beat entry (in base.py's CELERY_BEAT_SCHEDULE): from the public schema, it walks every destination.
ATRIUM_SIEM_BEAT_ENTRY: dict[str, object] = {
    "task": "audit.platform.tasks.siem_stream_all",
    "schedule": ATRIUM_SIEM_INTERVAL_S,
    "options": {"expires": ATRIUM_SIEM_INTERVAL_S},
    "tenant_schemas": ["public"],
}

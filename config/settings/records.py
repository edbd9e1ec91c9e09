"""Settings: durable records of model calls (the recorder, its journal) and the compliance jobs (GDPR exports,
deletions, retention). Imported by base.py."""

from __future__ import annotations

from pathlib import Path

from config.env import env

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# A quota reservation whose call was never settled (its process was killed) gives its tokens back after this long;
# longer than the longest call (a settled call is counted exactly whatever this is).
ATRIUM_QUOTA_RESERVATION_TTL_S = env.float("ATRIUM_QUOTA_RESERVATION_TTL_S", default=900.0)
# At a web process's start, the calls recorded this many minutes back whose quota or budget settlement was lost
# with their process are settled (inference/settle_recovery.py; 0 turns it off); calls younger than the grace may
# still be settled by their live process (a second pass runs once the grace is over).
ATRIUM_SETTLE_RECOVERY_MINUTES = env.float("ATRIUM_SETTLE_RECOVERY_MINUTES", default=15.0)
ATRIUM_SETTLE_RECOVERY_GRACE_S = env.float("ATRIUM_SETTLE_RECOVERY_GRACE_S", default=30.0)

# --- chat, metrics, compliance ---------------------------------------------------------------------
ATRIUM_RECORD_IN_BACKGROUND = env.bool("ATRIUM_RECORD_IN_BACKGROUND", default=True)  # inference/recorder.py
# Group commit: a call's response waits for the commit of the batch carrying its records (docs/decisions.md).
ATRIUM_RECORDER_LINGER_MS = env.float("ATRIUM_RECORDER_LINGER_MS", default=0)  # extra wait to gather a batch
# Leader/follower: a call whose records find the writer idle commits them in its own request thread.
ATRIUM_RECORDER_LEAD = env.bool("ATRIUM_RECORDER_LEAD", default=True)
# Records already fsynced to the journal (serve_and_journal) wait this long to gather a larger batch: nobody waits.
ATRIUM_RECORDER_JOURNALED_LINGER_MS = env.float("ATRIUM_RECORDER_JOURNALED_LINGER_MS", default=50)
ATRIUM_RECORDER_BATCH = env.int("ATRIUM_RECORDER_BATCH", default=500)  # most records in one batch
# While records wait, the quota settlement between two batches runs at most this often (it holds up the next commit).
ATRIUM_RECORDER_SETTLE_EVERY_S = env.float("ATRIUM_RECORDER_SETTLE_EVERY_S", default=0.05)
ATRIUM_RECORDER_MAX_PENDING = env.int("ATRIUM_RECORDER_MAX_PENDING", default=10_000)  # then callers wait for room
# How long a response waits for its records' commit before the tenant's record policy applies (503 or journal).
ATRIUM_RECORD_COMMIT_WAIT_MS = env.float("ATRIUM_RECORD_COMMIT_WAIT_MS", default=3000)
# The local write-ahead journal (serve_and_journal tenants' durability point): a persistent directory of each web host.
ATRIUM_RECORD_JOURNAL_DIR = env.str("ATRIUM_RECORD_JOURNAL_DIR", default=str(BASE_DIR / "var" / "journal"))
ATRIUM_RECORD_JOURNAL_SCAN_S = env.float("ATRIUM_RECORD_JOURNAL_SCAN_S", default=5)  # look for dead processes' journals
# A journal file starts anew at this size; files whose records are all in the database are deleted.
ATRIUM_RECORD_JOURNAL_SEGMENT_MB = env.float("ATRIUM_RECORD_JOURNAL_SEGMENT_MB", default=8)
ATRIUM_RECORDER_STOP_WAIT_S = env.float("ATRIUM_RECORDER_STOP_WAIT_S", default=20)  # at a graceful stop, then journal
ATRIUM_EXPORT_TTL_DAYS = env.int("ATRIUM_EXPORT_TTL_DAYS", default=7)  # signed download links and files expire
ATRIUM_GDPR_LEASE_S = env.int("ATRIUM_GDPR_LEASE_S", default=120)  # a job silent this long is resumed elsewhere
ATRIUM_GDPR_BATCH = env.int("ATRIUM_GDPR_BATCH", default=2000)  # rows per transaction in GDPR jobs
ATRIUM_RETENTION_BATCH = env.int("ATRIUM_RETENTION_BATCH", default=1000)
# Per-call usage rows (idempotency keys of records, today's quota rebuild) are kept this many days.
ATRIUM_USAGE_LEDGER_DAYS = env.int("ATRIUM_USAGE_LEDGER_DAYS", default=7)
ATRIUM_GDPR_BATCH_PAUSE_MS = env.int("ATRIUM_GDPR_BATCH_PAUSE_MS", default=0)  # throttle between GDPR batches
ATRIUM_GDPR_QUEUE = env.str("ATRIUM_GDPR_QUEUE", default="celery")  # Celery queue of export and deletion jobs

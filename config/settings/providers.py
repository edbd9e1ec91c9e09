"""Provider-path settings (imported by base.py): warm clients and credential renewal, anthropic-beta providers,
Message Batches."""

from config.env import env

# Provider clients are built when a process starts (inference.warm) and renewed before their credentials expire:
# an STS session or Google token is renewed this long before it ends (at most half its lifetime), checked every
# ATRIUM_CLIENT_REFRESH_INTERVAL_S by each process's refresher thread. ATRIUM_WARM_CLIENTS=false builds on first use.
ATRIUM_WARM_CLIENTS = env.bool("ATRIUM_WARM_CLIENTS", default=True)
ATRIUM_CREDENTIAL_REFRESH_AHEAD_S = env.float("ATRIUM_CREDENTIAL_REFRESH_AHEAD_S", default=300.0)
ATRIUM_CLIENT_REFRESH_INTERVAL_S = env.float("ATRIUM_CLIENT_REFRESH_INTERVAL_S", default=30.0)
ATRIUM_STS_SESSION_S = env.int("ATRIUM_STS_SESSION_S", default=3600)  # AssumeRole DurationSeconds
# anthropic-beta names only some providers accept: "files-api-2025-04-14=anthropic,name=anthropic;vertex". A name not
# listed goes to every provider (the Anthropic API as the header, Bedrock and Vertex as the body's anthropic_beta).
ATRIUM_BETA_PROVIDERS = {name: [p for p in value.split(";") if p] for name, value in
                         env.dict("ATRIUM_BETA_PROVIDERS", default={}).items()}
# Message Batches (inference/batches.py): the Celery queue that runs them, a worker's lease on a batch (renewed after
# each request; a batch whose lease ran out is queued again by batch_recover), the most requests in one batch and
# how long a batch may take before its remaining requests expire.
ATRIUM_BATCH_QUEUE = env.str("ATRIUM_BATCH_QUEUE", default="celery")
ATRIUM_BATCH_LEASE_S = env.int("ATRIUM_BATCH_LEASE_S", default=300)
ATRIUM_BATCH_MAX_REQUESTS = env.int("ATRIUM_BATCH_MAX_REQUESTS", default=10_000)
ATRIUM_BATCH_EXPIRY_S = env.int("ATRIUM_BATCH_EXPIRY_S", default=24 * 3600)
# A batch's requests and results are deleted this many days after it was created (Anthropic keeps results 29 days).
ATRIUM_BATCH_RESULTS_RETENTION_DAYS = env.int("ATRIUM_BATCH_RESULTS_RETENTION_DAYS", default=29)

"""The platform audit trail: a hash-chained, append-only record in the public schema of every change to a platform
object (tenants, domains, catalog, credentials, beat schedule, breaker resets), and the signed checkpoints of every
audit chain's head."""

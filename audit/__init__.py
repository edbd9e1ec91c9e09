"""Audit: hash-chained audit entries, consent, GDPR export, deletion and retention jobs."""

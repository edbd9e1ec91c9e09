"""Streaming of the audit trails to a SIEM as they are written: syslog (RFC 5424 over TCP or TLS) or an HTTPS
webhook, each entry with a stable id, a per-destination cursor advanced only after the receiver acknowledged
(docs/siem.md)."""

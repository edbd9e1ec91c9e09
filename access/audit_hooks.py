"""Audit entries for access events (logins, role changes, API keys), written through audit.services.

Kept in one place so every access event carries the same metadata shape. Call inside the
transaction of the change, as audit.services.audit_record expects.
"""

from __future__ import annotations

from typing import Any


def access_audit(event_type: str, *, user: Any = None, request: Any = None, status: str = "success",
                 metadata: dict[str, Any] | None = None, error: str = "") -> None:
    from audit.services import audit_record

    audit_record(event_type=event_type, user=user, request=request, status=status,
                 metadata=metadata or {}, error=error)

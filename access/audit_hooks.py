"""Audit entries for access events (logins, role changes, API keys), written through audit.services.

Kept in one place so every access event carries the same metadata shape. Call inside the
transaction of the change, as audit.services.audit_record expects.
"""

from __future__ import annotations

from typing import Any


def access_audit(event_type: str, *, user: Any = None, request: Any = None, status: str = "success",
                 metadata: dict[str, Any] | None = None, error: str = "", subject_id: int | None = None,
                 attempted_username: str | None = None) -> None:
    """Record an access event. Personal identifiers never go into the chained metadata:

    - `subject_id`, the user an action was about (role change, someone else's key), is stored as its pseudonym;
    - `attempted_username` (a failed sign-in) goes into the entry's personal fields, linked to the account when one
      has that name, so a GDPR deletion of that account blanks it.
    """
    from audit.chain import pseudonym, tenant_key
    from audit.services import audit_record

    metadata = dict(metadata or {})
    if subject_id is not None:
        metadata["subject"] = pseudonym(tenant_key(), subject_id)
    if attempted_username is None:
        audit_record(event_type=event_type, user=user, request=request, status=status, metadata=metadata,
                     error=error)
        return
    from django.contrib.auth import get_user_model

    from audit.services import request_personal

    account = get_user_model().objects.filter(username=attempted_username).only("pk").first()
    personal = {**request_personal(request), "username": attempted_username}
    audit_record(event_type=event_type, request=request, status=status, metadata=metadata, error=error,
                 user_id=account.pk if account else None, personal=personal)

"""One call for every change to a platform object, from the platform admin, the services and the CLI.

tenants imports no other app: this sends tenants.signals.platform_object_changed, which the audit app turns into
an entry of the platform's hash-chained trail (audit.platform.services.platform_audit_record) in the same
transaction. A change that cannot be recorded fails with it: the receiver's error propagates.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tenants.signals import platform_object_changed


def platform_actor(request: HttpRequest | None, fallback: str = "system") -> str:
    """The real actor: the signed-in platform user's name (never a generic "platform admin")."""
    user: Any = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return f"platform:{user.get_username()}"
    return fallback


def platform_change(*, actor: str, action: str, target: str, tenant_schema: str | None = None,
                    metadata: dict[str, Any] | None = None) -> None:
    platform_object_changed.send(sender=None, actor=actor, action=action, target=target,
                                 tenant_schema=tenant_schema, metadata=dict(metadata or {}))

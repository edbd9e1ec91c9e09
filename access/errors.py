"""Typed access failures. Each maps to one HTTP status in one place (the API layer)."""

from __future__ import annotations


class AccessError(Exception):
    """Base of every refusal the access layer makes."""

    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotPermitted(AccessError):
    """The user's roles or the tenant's policy do not allow this request (403)."""

    def __init__(self, message: str, *, permission: str | None = None) -> None:
        super().__init__(message)
        self.permission = permission


class WriteNotAllowed(NotPermitted):
    pass


class ModelNotAllowed(NotPermitted):
    pass


class ToolsNotAllowed(NotPermitted):
    pass


class VisionNotAllowed(NotPermitted):
    pass


class AuthenticationFailed(AccessError):
    """Missing, malformed, expired or forged credentials (401)."""

    status = 401


class QuotaExceeded(AccessError):
    """A rate or token budget is spent (429); retry_after is in whole seconds."""

    status = 429

    def __init__(self, message: str, *, retry_after: int, limit: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit

"""Typed access failures. Each carries its HTTP status; config/http.py maps them, in one place."""

from __future__ import annotations

from config.http import HttpError


class AccessError(HttpError):
    """Base of every refusal the access layer makes."""

    status = 403


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


class BetaNotAllowed(NotPermitted):
    """An anthropic-beta name the tenant's policy does not allow, or that is not a name at all (400)."""

    status = 400


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

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}

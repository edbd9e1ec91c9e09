"""Typed failures of the inference core; the gateway maps each to one HTTP status and Anthropic error type."""

from __future__ import annotations

from typing import Any

from inference.types import Attempt


class InferenceError(Exception):
    """Base class: anything the router or a provider adapter raises on purpose."""

    status = 500
    error_type = "api_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFound(InferenceError):
    """The tier or model id is not in the catalog, or no provider in the order serves it."""

    status = 404
    error_type = "not_found_error"


class ProviderMisconfigured(InferenceError):
    """A provider cannot be called at all: credentials missing or unreadable. The router fails over past it."""

    status = 503
    error_type = "api_error"


class UpstreamRequestError(InferenceError):
    """The provider refused the request itself (400, 413, 422): the caller's error, returned as it is, no failover."""

    def __init__(self, status: int, body: dict[str, Any] | None, message: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}
        self.attempts = attempts
        error = self.body.get("error") if isinstance(self.body, dict) else None
        self.error_type = (error or {}).get("type") or {
            413: "request_too_large",
        }.get(status, "invalid_request_error")


class ProviderUnavailable(InferenceError):
    """Every target failed, was skipped by its breaker, or the request's deadline passed. Mapped to 529."""

    status = 529
    error_type = "overloaded_error"

    def __init__(self, attempts: list[Attempt], *, deadline_exceeded: bool = False) -> None:
        self.attempts = attempts
        self.deadline_exceeded = deadline_exceeded
        if attempts:
            detail = "; ".join(f"{a.target}: {a.reason or a.outcome}" for a in attempts)
        else:
            detail = "no provider is configured for this organisation"
        prefix = "deadline exceeded" if deadline_exceeded else "all providers failed"
        super().__init__(f"No provider could answer ({prefix}): {detail}")

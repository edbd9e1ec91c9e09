"""Typed failures of the inference core; the gateway maps each to one HTTP status and Anthropic error type."""

from __future__ import annotations

import re
from typing import Any

from config.http import HttpError
from inference.types import Attempt

# What must never reach a caller: AWS ARNs and account ids, URLs, e-mail-shaped principals (issue 14, "error text").
_CONFIGURATION = re.compile(r"arn:aws[\w-]*:[^\s,;)\]'\"]*|\b\d{12}\b|[a-z][a-z0-9+.-]*://[^\s,;)\]'\"]+"
                            r"|[\w.+-]+@[\w-]+\.[\w.-]+", re.IGNORECASE)


def redact_configuration(text: str) -> str:
    """`text` with ARNs, account ids, URLs and principals replaced by "[redacted]"."""
    return _CONFIGURATION.sub("[redacted]", text)


class InferenceError(HttpError):
    """Base class: anything the router or a provider adapter raises on purpose."""

    status = 500
    error_type = "api_error"

    # Where the failure happened, for usage and audit attribution: the target that answered (or the last tried).
    provider: str = ""
    region: str = ""
    model_id: str = ""

    @property
    def public_message(self) -> str:
        """What the caller sees. `message` (full detail: targets, reasons) goes to the audit entry and the logs;
        subclasses whose detail describes the platform's configuration say only what the caller can act on."""
        return redact_configuration(self.message)


class ModelNotFound(InferenceError):
    """The tier or model id is not in the catalog, or no provider in the order serves it."""

    status = 404
    error_type = "not_found_error"


class ProviderMisconfigured(InferenceError):
    """A provider cannot be called at all: credentials missing or unreadable. The router fails over past it."""

    status = 503
    error_type = "api_error"

    @property
    def public_message(self) -> str:
        return "The model's provider is not available to your organisation right now; an administrator can see why."


class UpstreamRequestError(InferenceError):
    """The provider refused the request itself (400, 413, 422): the caller's error, returned as it is, no failover."""

    def __init__(self, status: int, body: dict[str, Any] | None, message: str, attempts: list[Attempt], *,
                 provider: str = "", region: str = "", model_id: str = "") -> None:
        super().__init__(message)
        self.provider, self.region, self.model_id = provider, region, model_id
        self.status = status
        self.body = body or {}
        self.attempts = attempts
        error = self.body.get("error") if isinstance(self.body, dict) else None
        self.error_type = (error or {}).get("type") or {
            413: "request_too_large",
        }.get(status, "invalid_request_error")

    @property
    def public_message(self) -> str:
        """The provider's own message when it gave one (the caller's request was at fault), scrubbed of anything
        that describes the configuration."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(error, dict) and error.get("type") and error.get("message"):
            return redact_configuration(str(error["message"]))
        return redact_configuration(self.message)


class BetaUnsupported(InferenceError):
    """Every target of the request's model was skipped because it does not accept one of its anthropic-beta names
    (ATRIUM_BETA_PROVIDERS): the caller's request cannot be served as asked (400)."""

    status = 400
    error_type = "invalid_request_error"


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
        # Attributed to the last target actually called (else the first one skipped).
        tried = [a for a in attempts if a.outcome in ("failover", "error")] or attempts
        if tried:
            last = tried[-1]
            self.provider, _, self.region = last.target.partition(":")
            self.model_id = last.model_id

    @property
    def public_message(self) -> str:
        # Never the targets, their order or their failures (ARNs, endpoints, class names): see `message`.
        if not self.attempts:
            return "No provider is set up for this model in your organisation; ask an administrator."
        if self.deadline_exceeded:
            return "No provider answered within the time allowed; try again shortly."
        return "All providers are unavailable right now; try again shortly."

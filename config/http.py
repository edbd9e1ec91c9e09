"""HTTP helpers every app shares: typed errors that carry their own status, type and public message.

An exception class says once what the caller gets (status, Anthropic-style error type, a message safe to show);
the views and the API layers map them without looking at the message text.
"""

from __future__ import annotations

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 410: "not_found_error",
               413: "request_too_large", 415: "invalid_request_error", 422: "invalid_request_error",
               429: "rate_limit_error", 500: "api_error", 503: "api_error", 529: "overloaded_error"}


class HttpError(Exception):
    """Base of every failure that knows its HTTP answer. Subclasses set `status` (and `error_type` when it is not
    the status's usual one); `public_message` is what the caller may read, `message` the full detail."""

    status: int = 500
    error_type: str = ""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def public_message(self) -> str:
        return self.message

    @property
    def type_name(self) -> str:
        return self.error_type or ERROR_TYPES.get(self.status, "api_error")

    @property
    def headers(self) -> dict[str, str]:
        return {}

"""One place where the environment is read, so every setting's source is visible at a glance."""

from __future__ import annotations

import base64
from typing import Any

import environ


class ImproperlyConfiguredSecret(SystemExit):
    """Raised at start-up when a production secret is missing; exits with one clear line."""


class InvalidSetting(SystemExit):
    """Raised at start-up when a variable cannot be read as its setting's type; exits with one clear line."""


class _Env(environ.Env):
    """django-environ's reader, but a malformed value (ATRIUM_RECORDER_LINGER_MS=abc) stops the process with one
    line naming the variable and the type it needs, instead of a traceback ending in "could not convert". A
    boolean is one of django-environ's true words, a false word below or an integer; anything else (a typo such
    as `ture`, which django-environ reads as false) is malformed too."""

    BOOLEAN_FALSE_STRINGS = ("false", "off", "no", "n", "0", "")

    @classmethod
    def parse_value(cls, value: Any, cast: Any) -> Any:
        if cast is bool and isinstance(value, str):
            text = value.strip().lower()
            if text not in cls.BOOLEAN_TRUE_STRINGS and text not in cls.BOOLEAN_FALSE_STRINGS:
                int(text)  # an integer is read as django-environ does (non-zero: true); anything else: ValueError
        return super().parse_value(value, cast)

    def get_value(self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET,
                  parse_default: bool = False) -> Any:
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError) as exc:
            kind = getattr(cast, "__name__", None) or type(cast).__name__
            raise InvalidSetting(f"atrium: {var} is not a valid {kind} value; fix it or unset it.") from exc


env = _Env()


def label_key(label: str) -> str:
    """A Fernet key spelled out from a readable, public label (padded to 32 bytes): for development and tests
    only, where data must stay decryptable from one run to the next. Nothing it protects is secret."""
    raw = label.encode()
    if len(raw) > 32:
        raise ValueError("a key label is at most 32 bytes")
    return base64.urlsafe_b64encode(raw.ljust(32, b"0")).decode()


def require(name: str) -> str:
    """Return a required variable or stop the process with a message naming it."""
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfiguredSecret(f"atrium: {name} is not set; production refuses to start without it.")
    return value

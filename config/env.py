"""One place where the environment is read, so every setting's source is visible at a glance."""

from __future__ import annotations

import base64

import environ


class ImproperlyConfiguredSecret(SystemExit):
    """Raised at start-up when a production secret is missing; exits with one clear line."""


env = environ.Env()


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

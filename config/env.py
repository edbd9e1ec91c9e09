"""One place where the environment is read, so every setting's source is visible at a glance."""

from __future__ import annotations

import environ


class ImproperlyConfiguredSecret(SystemExit):
    """Raised at start-up when a production secret is missing; exits with one clear line."""


env = environ.Env()


def require(name: str) -> str:
    """Return a required variable or stop the process with a message naming it."""
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfiguredSecret(f"atrium: {name} is not set; production refuses to start without it.")
    return value

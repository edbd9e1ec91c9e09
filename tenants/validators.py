"""Validation of tenant policy values, shared by the admin form, the services and the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
TARGET_RE = re.compile(r"^(anthropic|bedrock:[a-z]{2}(-[a-z]+)+-\d|vertex:([a-z]+-[a-z]+\d+|global))$")
RESERVED_SLUGS = {"public", "tenant-template", "information-schema", "www", "admin", "api", "static", "media"}
DEFAULT_TIERS = {"opus", "sonnet", "haiku"}


def validate_slug(slug: str) -> None:
    if not SLUG_RE.match(slug):
        raise ValidationError(
            f"Invalid slug {slug!r}: use 3-42 lowercase letters, digits and hyphens, starting with a letter."
        )
    if slug in RESERVED_SLUGS or slug.startswith("pg-"):
        raise ValidationError(f"Invalid slug {slug!r}: the name is reserved.")


def validate_domain(domain: str) -> None:
    if not DOMAIN_RE.match(domain):
        raise ValidationError(f"Invalid domain {domain!r}: expected a host name such as acme.example.com.")


def known_model_names() -> set[str]:
    """Tiers and model ids the catalog knows, via a settings hook so tenants imports no other app."""
    hook: str | None = getattr(settings, "ATRIUM_MODEL_NAMES_HOOK", None)
    if not hook:
        return set(DEFAULT_TIERS)
    loader: Callable[[], Iterable[str]] = import_string(hook)
    return set(loader()) | DEFAULT_TIERS


def validate_allowed_models(names: Iterable[str]) -> None:
    known = known_model_names()
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        raise ValidationError(f"Unknown model tier or id: {', '.join(unknown)}. Known: {', '.join(sorted(known))}.")


def validate_provider_order(order: object) -> None:
    if not isinstance(order, list) or not all(isinstance(t, str) for t in order):
        raise ValidationError('Provider order must be a list of strings such as ["anthropic", "bedrock:us-east-1"].')
    bad = [t for t in order if not TARGET_RE.match(t)]
    if bad:
        raise ValidationError(
            f"Unknown provider target: {', '.join(bad)}. Use anthropic, bedrock:<aws-region> or vertex:<gcp-region>."
        )
    if len(set(order)) != len(order):
        raise ValidationError("Provider order lists a target twice.")

"""The Anthropic API: an API key from the tenant's settings or ANTHROPIC_API_KEY."""

from __future__ import annotations

import os

import anthropic
from django.conf import settings

from inference.errors import ProviderMisconfigured
from inference.types import ProviderTarget


def build(target: ProviderTarget) -> anthropic.Anthropic:
    api_key = target.credentials.get("api_key") or os.environ.get("ANTHROPIC_API_KEY")
    if not api_key:
        raise ProviderMisconfigured("anthropic: no API key (tenant credentials or ANTHROPIC_API_KEY)")
    # Retries off: the router owns retries and failover, and an SDK retry would spend the request's deadline.
    return anthropic.Anthropic(api_key=api_key, base_url=settings.ATRIUM_ANTHROPIC_BASE_URL, max_retries=0,
                               timeout=settings.ATRIUM_REQUEST_DEADLINE_S)

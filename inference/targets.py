"""Turn a tenant's provider order and encrypted credentials into the router's list of targets."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from inference.types import ProviderTarget

PROVIDERS = ("anthropic", "bedrock", "vertex")


def parse_target(key: str, credentials: dict[str, Any] | None = None) -> ProviderTarget:
    """`anthropic`, `bedrock:eu-west-1`, `vertex:us-east5` -> ProviderTarget. ValueError on anything else."""
    provider, _, region = key.strip().partition(":")
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} in {key!r}; use anthropic, bedrock:<region>, vertex:<region>")
    if provider == "anthropic" and region:
        raise ValueError("the Anthropic API has no region; write just 'anthropic'")
    if provider != "anthropic" and not region:
        raise ValueError(f"{provider} needs a region, e.g. {provider}:us-east-1")
    return ProviderTarget(provider=provider, region=region, credentials=credentials or {})  # type: ignore[arg-type]


def provider_order_for(tenant: Any | None) -> list[str]:
    order = list(getattr(tenant, "provider_order", None) or [])
    return order or list(settings.ATRIUM_PROVIDER_ORDER)


def targets_for_tenant(tenant: Any | None) -> list[ProviderTarget]:
    """The tenant's failover order with its credentials (empty credentials = the environment's)."""
    credentials: dict[str, Any] = dict(getattr(tenant, "credentials", None) or {}) if tenant is not None else {}
    return [parse_target(key, dict(credentials.get(key.partition(":")[0]) or {})) for key in provider_order_for(tenant)]

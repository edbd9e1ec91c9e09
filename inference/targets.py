"""Turn a tenant's provider order and encrypted credentials into the router's list of targets."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from typing import TYPE_CHECKING, Any

from django.conf import settings

from config.settings_once import setting
from inference.types import ProviderTarget

if TYPE_CHECKING:
    from tenants.models import Tenant

PROVIDERS = ("anthropic", "bedrock", "vertex")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def credential_scope(provider: str, credentials: dict[str, Any]) -> str:
    """Whose account a target's credentials belong to, so its breaker and rate limits are that account's alone.

    "platform" for the environment's credentials (every tenant without its own shares them); otherwise the AWS
    account of an assumed role, the Google project, or a digest of the key (an API key names no account).
    Digests, never the secret itself: the scope ends up in Redis keys and on the status page."""
    mode = credentials.get("mode")
    if not credentials or mode in ("default", "adc"):
        return "platform"
    if provider == "bedrock":
        arn = str(credentials.get("role_arn") or "")
        parts = arn.split(":")
        if mode == "assume_role" and len(parts) > 4 and parts[4]:
            return f"aws:{parts[4]}"
        if mode == "profile":
            return f"profile:{_digest(str(credentials.get('profile')))}"
        return f"key:{_digest(str(credentials.get('access_key') or ''))}"
    if provider == "vertex":
        project = credentials.get("project_id")
        if not project and credentials.get("service_account_json"):
            try:
                project = json.loads(credentials["service_account_json"]).get("project_id")
            except (ValueError, AttributeError, TypeError):
                project = None
        if project:
            return f"gcp:{project}"
        return f"token:{_digest(json.dumps(credentials, sort_keys=True, default=str))}"
    return f"key:{_digest(str(credentials.get('api_key') or json.dumps(credentials, sort_keys=True, default=str)))}"


def parse_target(key: str, credentials: dict[str, Any] | None = None, *,
                 first_byte_timeout_s: float | None = None) -> ProviderTarget:
    """`anthropic`, `bedrock:eu-west-1`, `vertex:us-east5` -> ProviderTarget. ValueError on anything else."""
    provider, _, region = key.strip().partition(":")
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} in {key!r}; use anthropic, bedrock:<region>, vertex:<region>")
    if provider == "anthropic" and region:
        raise ValueError("the Anthropic API has no region; write just 'anthropic'")
    if provider != "anthropic" and not region:
        raise ValueError(f"{provider} needs a region, e.g. {provider}:us-east-1")
    credentials = credentials or {}
    return ProviderTarget(provider=provider, region=region, credentials=credentials,  # type: ignore[arg-type]
                          first_byte_timeout_s=first_byte_timeout_s,
                          scope=credential_scope(provider, credentials))


def provider_order_for(tenant: Tenant | None) -> list[str]:
    order = list(getattr(tenant, "provider_order", None) or [])
    return order or list(settings.ATRIUM_PROVIDER_ORDER)


def targets_for_tenant(tenant: Tenant | None) -> list[ProviderTarget]:
    """The tenant's failover order with its credentials (empty credentials = the environment's) and its own
    time-to-first-byte budget, if it has one.

    Built once per tenant object and kept on it with copies of everything it was built from (credentials,
    provider order, budget, ExternalId, the platform's order): any change of one, in place or not, rebuilds on the
    next call. A change saved by another process reaches this one as a new tenant object (the tenant cache is
    emptied by the database at commit, config/middleware.py)."""
    if tenant is None:
        return _targets_build(None)
    credentials = getattr(tenant, "credentials", None)
    order = getattr(tenant, "provider_order", None)
    budget = getattr(tenant, "first_byte_timeout_s", None)
    external_id = getattr(tenant, "bedrock_external_id", "")
    platform = setting("ATRIUM_PROVIDER_ORDER")
    memo = getattr(tenant, "_atrium_targets", None)
    if memo is not None and memo[0] == (credentials, order, budget, external_id, platform):
        return list(memo[1])
    built = _targets_build(tenant)
    sources = copy.deepcopy((credentials, order, budget, external_id, platform))
    with contextlib.suppress(AttributeError):  # a stand-in that takes no attributes: built on every call
        tenant._atrium_targets = (sources, tuple(built))
    return built


def _targets_build(tenant: Tenant | None) -> list[ProviderTarget]:
    credentials: dict[str, Any] = dict(getattr(tenant, "credentials", None) or {}) if tenant is not None else {}
    budget = getattr(tenant, "first_byte_timeout_s", None)
    targets = []
    for key in provider_order_for(tenant):
        section = dict(credentials.get(key.partition(":")[0]) or {})
        if key.startswith("bedrock") and tenant is not None:
            # Always this tenant's platform-generated ExternalId, whatever the stored credentials say: a role ARN
            # copied from another tenant then fails its trust policy (no confused deputy).
            section["external_id"] = getattr(tenant, "bedrock_external_id", "") or ""
        targets.append(parse_target(key, section, first_byte_timeout_s=budget))
    return targets

"""The access policy: the one function every model call passes (chat API, /v1/messages, web chat).

It decides from the user's permissions (Django Groups in the tenant schema) and the tenant's policy
row whether a request may run and with how many output tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_backends
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.core.signals import setting_changed

from access.errors import (
    BetaNotAllowed,
    ModelNotAllowed,
    NotPermitted,
    ToolsNotAllowed,
    VisionNotAllowed,
    WriteNotAllowed,
)
from access.selectors import permissions_load

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from tenants.models import Tenant

# Without access.high_tokens a request gets at most this many output tokens.
STANDARD_MAX_TOKENS = 4096
TIERS = ("opus", "sonnet", "haiku")


@dataclass(frozen=True)
class PolicyDecision:
    model: str
    tier: str | None
    max_tokens: int
    requested_max_tokens: int
    clamp_reason: str | None  # "high_tokens" (role) or "tenant_max" (tenant policy), None when not clamped

    @property
    def clamped(self) -> bool:
        return self.max_tokens != self.requested_max_tokens


@cache
def _permission_backends() -> tuple[Any, ...]:
    """The authentication backends that answer has_perm, loaded once (Django loads and instantiates every backend
    on each has_perm call: most of its cost); forgotten when AUTHENTICATION_BACKENDS changes (tests). Only their
    has_perm is called, which keeps no state on the backend."""
    return tuple(b for b in get_backends() if hasattr(b, "has_perm"))


@cache
def _model_backends_only() -> bool:
    """Whether every backend that answers has_perm answers as Django's ModelBackend does: from the user's
    `_perm_cache` alone (ours: ModelBackend and the OIDC backend, its subclass). Then the answer is one set lookup,
    not a walk through each backend's has_perm and get_all_permissions (three calls and two property reads each)."""
    backends = _permission_backends()
    return bool(backends) and all(type(b).has_perm is ModelBackend.has_perm
                                  and type(b).get_all_permissions is ModelBackend.get_all_permissions
                                  for b in backends)


def _backends_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUTHENTICATION_BACKENDS":
        _permission_backends.cache_clear()
        _model_backends_only.cache_clear()


setting_changed.connect(_backends_changed, dispatch_uid="access.policy._backends_changed")


def has_perm(user: Any, perm: str) -> bool:
    """`user.has_perm(perm)` as Django answers it (an active superuser has every permission; else the first backend
    that grants it, a PermissionDenied refusing), with the backends loaded once; a user model with its own
    has_perm is asked directly, and so is a lazy stand-in for one (request.user, a SimpleLazyObject: its class has
    no has_perm, the wrapped user's answers through it)."""
    if getattr(type(user), "has_perm", None) is not PermissionsMixin.has_perm:
        return bool(user.has_perm(perm))
    if user.is_active and user.is_superuser:
        return True
    if _model_backends_only():
        # What ModelBackend.has_perm answers once the user's permissions are loaded: nothing for an inactive or
        # anonymous user, else membership in the loaded set (the same set for every ModelBackend).
        if not user.is_active or user.is_anonymous:
            return False
        loaded = getattr(user, "_perm_cache", None)
        if loaded is not None:
            return perm in loaded
    for backend in _permission_backends():
        try:
            if backend.has_perm(user, perm, None):
                return True
        except PermissionDenied:
            return False
    return False


BETA_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MAX_BETAS = 16


def betas_check(tenant: Tenant, header: str | None) -> tuple[str, ...]:
    """The anthropic-beta names of a request (its header, comma-separated), each allowed by the tenant's policy:
    the platform's list narrowed by the tenant's own (Tenant.effective_anthropic_beta_allowed). BetaNotAllowed
    (400) names the first one that is malformed or not allowed."""
    if header is None or not header.strip():
        return ()
    names = [name.strip() for name in header.split(",")]
    if any(not name for name in names):
        raise BetaNotAllowed("anthropic-beta: an empty name in the list (names are comma-separated, e.g. "
                             "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19).",
                             permission="anthropic_beta")
    if len(names) > MAX_BETAS:
        raise BetaNotAllowed(f"anthropic-beta: at most {MAX_BETAS} names.", permission="anthropic_beta")
    for name in names:
        if not BETA_NAME.match(name):
            raise BetaNotAllowed(f"anthropic-beta: {name[:40]!r} is not a beta name (lowercase letters, digits, "
                                 f"'.', '_' and '-', at most 100).", permission="anthropic_beta")
    allowed = tenant.effective_anthropic_beta_allowed
    for name in names:
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise BetaNotAllowed(f"anthropic-beta: {name} is not enabled for your organisation (enabled: {listed}).",
                                 permission="anthropic_beta")
    return tuple(dict.fromkeys(names))


def model_allowed_by_tenant(tenant: Tenant, model: str, tier: str | None) -> bool:
    """The platform's allow-list and the tenant's own (tighter) one: both must allow the model."""
    return bool(tenant.model_allowed(model, tier))


def model_allowed_for_user(user: User, tier: str | None) -> bool:
    return tier is not None and has_perm(user, f"access.use_{tier}")


def policy_check(
    *,
    user: User,
    tenant: Tenant,
    model: str,
    tier: str | None,
    max_tokens: int,
    has_tools: bool = False,
    has_images: bool = False,
) -> PolicyDecision:
    """Allow or refuse a model call; clamp max_tokens. Raises a NotPermitted subclass naming what is missing.

    `tier` is the catalog tier of `model` (opus, sonnet, haiku) or None when the model has none;
    a model without a tier needs the tenant admin's access.admin permission.
    """
    # Permissions come with an API key's user (cached per process, emptied by the database at every change) or
    # are read here (one query; Django then caches them on this user object only).
    permissions_load(user)
    if not getattr(tenant, "is_active", True):
        raise NotPermitted("This organisation is deactivated.", permission=None)
    if not getattr(user, "is_active", False):
        raise NotPermitted("This account is deactivated.", permission=None)
    if not has_perm(user, "access.write"):
        raise WriteNotAllowed("Your role may not send messages (missing permission access.write).",
                              permission="access.write")
    if not model_allowed_by_tenant(tenant, model, tier):
        raise ModelNotAllowed(f"Model {model!r} is not on this organisation's allow-list.", permission=None)
    if tier is None:
        if not has_perm(user, "access.admin"):
            raise ModelNotAllowed(f"Model {model!r} has no tier; only administrators may call it.",
                                  permission="access.admin")
    elif not model_allowed_for_user(user, tier):
        raise ModelNotAllowed(f"Your role may not use {tier} models (missing permission access.use_{tier}).",
                              permission=f"access.use_{tier}")
    if has_tools and not has_perm(user, "access.use_tools"):
        raise ToolsNotAllowed("Your role may not use tools (missing permission access.use_tools).",
                              permission="access.use_tools")
    if has_images and not has_perm(user, "access.use_vision"):
        raise VisionNotAllowed("Your role may not send images (missing permission access.use_vision).",
                               permission="access.use_vision")

    granted = max_tokens
    reason: str | None = None
    if granted > STANDARD_MAX_TOKENS and not has_perm(user, "access.high_tokens"):
        granted, reason = STANDARD_MAX_TOKENS, "high_tokens"
    ceiling = tenant.effective_max_tokens_per_request  # the platform's, or the tenant's own when lower
    if granted > ceiling:
        granted, reason = ceiling, "tenant_max"
    return PolicyDecision(model=model, tier=tier, max_tokens=granted, requested_max_tokens=max_tokens,
                          clamp_reason=reason)


def permitted_tiers(*, user: User, tenant: Tenant) -> list[str]:
    """Tiers this user may call in this tenant (for /v1/models and the chat's model picker)."""
    return [t for t in TIERS if has_perm(user, f"access.use_{t}") and model_allowed_by_tenant(tenant, t, t)]

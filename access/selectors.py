"""Reads for access: the tenant's SSO configuration, a user's roles and API keys."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import QuerySet
from django_tenants.utils import get_public_schema_name

from access.models import ApiKey, OIDCConfig
from access.queries import user_permissions

if TYPE_CHECKING:
    from django.contrib.auth.models import User



def oidc_config_get() -> OIDCConfig | None:
    """The current tenant's SSO configuration, or None when there is none. Read fresh on every call."""
    if getattr(connection, "schema_name", None) in (None, get_public_schema_name()):
        return None  # the public site has no tenant tables (and no SSO)
    return OIDCConfig.objects.filter(pk=1).first()


def oidc_config_enabled() -> OIDCConfig | None:
    config = oidc_config_get()
    return config if config is not None and config.enabled else None


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user).order_by("-created_at")


def user_role_names(user: User) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def api_key_get_for_owner(*, user: User, key_id: str) -> ApiKey | None:
    try:
        parsed = uuid.UUID(str(key_id))
    except ValueError:
        return None
    return ApiKey.objects.filter(pk=parsed, user=user).first()


def permissions_load(user: Any) -> None:
    """Fill Django's per-request permission cache with one query (Django's backend would run two).

    For sessions and bearer tokens, read on every request (a role edited in the admin applies to the next one);
    an API key's user arrives with them already, from the per-process key cache the database empties at every
    change (access.services._live_key_rows).
    """
    if hasattr(user, "_perm_cache") or not getattr(user, "is_active", False) or getattr(user, "is_superuser", False):
        return
    user._perm_cache = user_permissions(int(user.pk)) or set()

"""Template tags for access: whether the login page offers single sign-on."""

from __future__ import annotations

from django import template

from access.models import OIDCConfig
from access.selectors import oidc_config_enabled

register = template.Library()


@register.simple_tag
def sso_login_option() -> OIDCConfig | None:
    """The tenant's enabled SSO configuration (for the login button), or None."""
    return oidc_config_enabled()

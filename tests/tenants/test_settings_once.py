"""Settings read once per process (config/settings_once.py) follow every change made through Django's settings
machinery (pytest-django's `settings`, override_settings): the next read sees the new value."""

from __future__ import annotations

from typing import Any

from django.test import override_settings

from config.settings_once import setting, setting_number
from config.tenant_cache import cache_ttl


def test_a_changed_setting_is_read_again(settings: Any) -> None:
    settings.ATRIUM_AUTH_CACHE_S = 300
    assert cache_ttl() == 300.0
    settings.ATRIUM_AUTH_CACHE_S = 0
    assert cache_ttl() == 0.0
    with override_settings(ATRIUM_AUTH_CACHE_S="12.5"):
        assert cache_ttl() == 12.5
    assert cache_ttl() == 0.0
    settings.ATRIUM_PROVIDER_ORDER = ["anthropic"]
    assert setting("ATRIUM_PROVIDER_ORDER") == ["anthropic"]
    settings.ATRIUM_PROVIDER_ORDER = ["bedrock:eu-west-1"]
    assert setting("ATRIUM_PROVIDER_ORDER") == ["bedrock:eu-west-1"]


def test_unset_and_empty_settings(settings: Any) -> None:
    assert setting_number("ATRIUM_NO_SUCH_SETTING_S", 7.0) == 7.0
    assert setting("ATRIUM_NO_SUCH_SETTING", "fallback") == "fallback"
    settings.ATRIUM_NO_SUCH_SETTING_S = ""
    assert setting_number("ATRIUM_NO_SUCH_SETTING_S", 7.0) == 0.0

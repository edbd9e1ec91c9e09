"""Settings the hot path reads on every call, read once per process.

A read of `django.conf.settings.X` costs some 0.3-0.4 us even when the value is already cached on the settings
object (LazyObject.__getattribute__ asks every value for `_mask_wrapped`, an AttributeError raised and caught);
the per-process caches read their TTL several times per API call. The values are kept here and forgotten on
Django's setting_changed signal (override_settings, pytest-django's `settings`), the only way settings change in a
running process (pytest-django's `del settings.X` sends none: a test deleting one of these must use
override_settings). Every caller of one name must pass the same default.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

_values: dict[str, Any] = {}
_numbers: dict[str, float] = {}
_flags: dict[str, bool] = {}
_MISSING: Any = object()


def setting(name: str, default: Any = None) -> Any:
    """settings.<name>, or `default` when it is not set."""
    value = _values.get(name, _MISSING)
    if value is _MISSING:
        value = _values[name] = getattr(settings, name, default)
    return value


def setting_number(name: str, default: float = 0.0) -> float:
    """settings.<name> as a float (a duration, a count), `default` when it is not set, 0 when it is empty."""
    value = _numbers.get(name)
    if value is None:
        value = _numbers[name] = float(getattr(settings, name, default) or 0)
    return value


def setting_flag(name: str, default: bool) -> bool:
    """settings.<name> as a switch, `default` when it is not set."""
    value = _flags.get(name)
    if value is None:
        value = _flags[name] = bool(getattr(settings, name, default))
    return value


def _forget(**kwargs: Any) -> None:
    _values.clear()
    _numbers.clear()
    _flags.clear()


setting_changed.connect(_forget, dispatch_uid="config.settings_once._forget")

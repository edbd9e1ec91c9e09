"""Model fields whose values are encrypted in the database (tenants.crypto)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.db import models

from tenants import crypto


class EncryptedTextField(models.TextField):
    """A string stored as a Fernet token. Empty stays empty so "not set" is visible without decrypting."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        if value is None or value == "":
            return value
        return crypto.encrypt(str(value))


if TYPE_CHECKING:
    _JSONBase = models.Field[dict[str, Any], dict[str, Any]]
else:
    _JSONBase = models.TextField


class EncryptedJSONField(_JSONBase):
    """A JSON document stored as one Fernet token."""

    def get_internal_type(self) -> str:
        return "TextField"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, Any]:
        if not value:
            return {}
        loaded: dict[str, Any] = json.loads(crypto.decrypt(value))
        return loaded

    def to_python(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        if not value:
            return {}
        parsed: dict[str, Any] = json.loads(value)
        return parsed

    def get_prep_value(self, value: Any) -> str:
        if not value:
            return ""
        return crypto.encrypt(json.dumps(value, sort_keys=True))

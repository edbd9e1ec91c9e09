"""Encryption of secrets at rest with MultiFernet over ATRIUM_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts. To rotate: put a new key first, run
`manage.py rotate_encryption_keys`, then drop the old key (docs/configuration.md).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["DecryptionFailed", "decrypt", "encrypt", "reset_keys", "rotate"]


class DecryptionFailed(Exception):
    """A stored secret cannot be read with any configured key."""


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = [k for k in settings.ATRIUM_ENCRYPTION_KEYS if k]
    if not keys:
        raise ImproperlyConfigured("ATRIUM_ENCRYPTION_KEYS is empty: secrets cannot be stored or read.")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "ATRIUM_ENCRYPTION_KEYS holds a malformed key (each must be 32 url-safe base64 bytes)."
        ) from exc


def reset_keys() -> None:
    """Forget the cached key ring (tests and rotation change settings at run time)."""
    _fernet.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionFailed("stored secret cannot be decrypted with the configured keys") from exc


def rotate(token: str) -> str:
    """Re-encrypt a token under the current first key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionFailed("stored secret cannot be decrypted with the configured keys") from exc

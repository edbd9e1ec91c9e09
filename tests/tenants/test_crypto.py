"""Credentials are encrypted at rest, never readable from the raw column, and survive key rotation."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from tenants import crypto
from tenants.models import Tenant
from tenants.services import tenant_credentials_set


def _raw_credentials(tenant: Tenant) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM public.tenants_tenant WHERE id = %s", [tenant.pk])
        return str(cursor.fetchone()[0])


@pytest.fixture
def keys_reset() -> Any:
    crypto.reset_keys()
    yield
    crypto.reset_keys()


def test_credentials_are_encrypted_at_rest(tenant_a: Any, db: None, keys_reset: None) -> None:
    tenant_credentials_set(tenant=tenant_a, provider="anthropic", values={"api_key": "sk-test-secret-value"})
    raw = _raw_credentials(tenant_a)
    assert "sk-test-secret-value" not in raw
    assert Tenant.objects.get(pk=tenant_a.pk).credentials["anthropic"]["api_key"] == "sk-test-secret-value"


def test_blank_value_keeps_the_stored_secret(tenant_a: Any, db: None, keys_reset: None) -> None:
    tenant_credentials_set(tenant=tenant_a, provider="bedrock", values={"mode": "keys", "secret_key": "s1"})
    tenant_credentials_set(tenant=tenant_a, provider="bedrock", values={"mode": "keys", "secret_key": ""})
    assert Tenant.objects.get(pk=tenant_a.pk).credentials["bedrock"]["secret_key"] == "s1"


def test_key_rotation_reencrypts_and_old_key_can_be_dropped(tenant_a: Any, db: None, keys_reset: None) -> None:
    from django.conf import settings

    old_keys = list(settings.ATRIUM_ENCRYPTION_KEYS)
    tenant_credentials_set(tenant=tenant_a, provider="anthropic", values={"api_key": "rotate-me"})
    new_key = Fernet.generate_key().decode()
    with override_settings(ATRIUM_ENCRYPTION_KEYS=[new_key, *old_keys]):
        crypto.reset_keys()
        call_command("rotate_encryption_keys", stdout=None)
    with override_settings(ATRIUM_ENCRYPTION_KEYS=[new_key]):
        crypto.reset_keys()
        assert Tenant.objects.get(pk=tenant_a.pk).credentials["anthropic"]["api_key"] == "rotate-me"
    with override_settings(ATRIUM_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        crypto.reset_keys()
        with pytest.raises(crypto.DecryptionFailed):
            Tenant.objects.get(pk=tenant_a.pk).credentials  # noqa: B018


def test_admin_never_shows_a_stored_secret(tenant_a: Any, public_client: Any, db: None, keys_reset: None) -> None:
    from django.contrib.auth import get_user_model

    tenant_credentials_set(tenant=tenant_a, provider="anthropic", values={"api_key": "sk-never-shown"})
    admin = get_user_model().objects.create_superuser("root-crypto", "r@example.com", "pw-Secret-123")
    public_client.force_login(admin)
    page = public_client.get(f"/admin/tenants/tenant/{tenant_a.pk}/change/")
    assert page.status_code == 200
    assert b"sk-never-shown" not in page.content
    assert b"Stored. Leave blank to keep." in page.content

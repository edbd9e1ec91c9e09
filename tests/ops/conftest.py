"""The chat tests' fixtures (simulator, users, keys, consent, quota policy) for the ops tests."""

from tests.chat.conftest import (  # noqa: F401 - fixtures
    api_key_for,
    committed_user,
    consented,
    quota_policy,
    sim,
    simulator,
    tenant_update,
)

"""The security tests reuse the gateway fixtures (simulator, keys, tenant policy) of tests/chat/."""

from __future__ import annotations

from tests.access.conftest import idp_servers, sso  # noqa: F401
from tests.chat.conftest import (  # noqa: F401
    api_key_for,
    clean,
    committed_user,
    consented,
    sim,
    simulator,
    tenant_update,
    web,
)

"""The security tests reuse the gateway fixtures (simulator, keys, tenant policy) of tests/chat/."""

from __future__ import annotations

from tests.access.conftest import idp_servers, sso  # noqa: F401
from tests.chat.conftest import api_key_for, consented, sim, simulator, tenant_update  # noqa: F401

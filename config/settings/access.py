"""Settings: access (SSO, bearer tokens, API keys, chat attachments). Imported by base.py."""

from __future__ import annotations

from config.env import env

# --- Access: SSO, bearer tokens, API keys (access/) ----------------------------------------------
# Each tenant configures its IdP in its own admin (access.OIDCConfig); these are platform-wide knobs.
ATRIUM_JWT_LEEWAY_S = env.int("ATRIUM_JWT_LEEWAY_S", default=30)  # clock skew allowed on exp/nbf/iat
ATRIUM_OIDC_CACHE_TTL_S = env.int("ATRIUM_OIDC_CACHE_TTL_S", default=3600)  # discovery and JWKS cache
ATRIUM_JWKS_REFRESH_INTERVAL_S = env.int("ATRIUM_JWKS_REFRESH_INTERVAL_S", default=60)  # unknown-kid refetch limit
ATRIUM_OIDC_HTTP_TIMEOUT_S = env.float("ATRIUM_OIDC_HTTP_TIMEOUT_S", default=5.0)
ATRIUM_OIDC_TEST_INTERVAL_S = env.int("ATRIUM_OIDC_TEST_INTERVAL_S", default=10)  # SSO "Test connection", per tenant
# URLs tenant administrators configure (OIDC discovery, JWKS, token endpoint) are fetched only over https from public
# addresses (config/outbound.py); these hosts, addresses or networks are allowed besides (and may use http), e.g. an
# IdP on the internal network: "idp.corp.example,10.20.0.0/16".
ATRIUM_OUTBOUND_ALLOWED_HOSTS = env.list("ATRIUM_OUTBOUND_ALLOWED_HOSTS", default=[])
ATRIUM_OUTBOUND_TIMEOUT_S = env.float("ATRIUM_OUTBOUND_TIMEOUT_S", default=5.0)
ATRIUM_OUTBOUND_MAX_BYTES = env.int("ATRIUM_OUTBOUND_MAX_BYTES", default=1024 * 1024)
# Server-side secret of the API-key HMAC; empty derives one from DJANGO_SECRET_KEY. Changing it
# (or the secret key while this is empty) invalidates every API key.
ATRIUM_API_KEY_PEPPER = env.str("ATRIUM_API_KEY_PEPPER", default="")
ATRIUM_API_KEYS_PER_USER = env.int("ATRIUM_API_KEYS_PER_USER", default=25)
# Web chat attachments (images and PDFs, only for roles with access.use_vision): the largest file accepted.
ATRIUM_CHAT_ATTACHMENT_MAX_BYTES = env.int("ATRIUM_CHAT_ATTACHMENT_MAX_BYTES", default=5 * 1024 * 1024)

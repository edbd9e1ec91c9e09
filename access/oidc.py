"""OpenID Connect plumbing shared by browser SSO and bearer tokens: discovery, JWKS, token validation.

Discovery documents and key sets are cached in Redis, so every process shares one copy and the IdP
sees one fetch per cache period. A token signed with a key we do not know triggers at most one
refetch of the key set per ATRIUM_JWKS_REFRESH_INTERVAL_S and issuer, however many such tokens
arrive: a flood of made-up `kid`s cannot turn Atrium into a load generator against the IdP.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import jwt
from django.conf import settings

from access.errors import AuthenticationFailed
from config.outbound import OutboundRefused, outbound_check, outbound_get_json
from config.redis import redis_client

logger = logging.getLogger(__name__)

# Only asymmetric algorithms: a symmetric one would let anyone holding the public key sign tokens.
ALLOWED_ALGORITHMS = ("RS256", "ES256")
_KTY = {"RS256": "RSA", "ES256": "EC"}


class OIDCError(AuthenticationFailed):
    """The IdP could not be reached or answered something unusable."""


class TokenRejected(AuthenticationFailed):
    """A token failed validation; `reason` is a short machine-readable code."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _cache_key(kind: str, url: str) -> str:
    return f"atrium:oidc:{kind}:{hashlib.sha256(url.encode()).hexdigest()[:32]}"


def _fetch_json(url: str, *, verify: bool) -> dict[str, Any]:
    """A tenant-configured URL, through config.outbound: https to public addresses only (or allow-listed), no
    redirects, a timeout and a size cap. Messages never carry the URL or the answer (they reach sign-in pages)."""
    try:
        return outbound_get_json(url, verify=verify, timeout=settings.ATRIUM_OIDC_HTTP_TIMEOUT_S)
    except OutboundRefused as exc:
        logger.info("OIDC fetch refused or failed for %s: %s", url, exc.message)
        raise OIDCError(f"identity provider unusable: {exc.message}") from exc


def discovery(config: Any, *, refresh: bool = False) -> dict[str, Any]:
    """The IdP's discovery document (cached). Its issuer must equal the configured one."""
    url = config.discovery_document_url
    key = _cache_key("discovery", url)
    r = redis_client()
    if not refresh:
        cached = r.get(key)
        if cached is not None:
            document = dict(json.loads(cached))
            # An edited issuer must not keep using the previous IdP's cached document.
            if document.get("issuer") == config.issuer:
                return document
    document = _fetch_json(url, verify=config.verify_ssl)
    # OIDC Discovery 1.0 §4.3: a document claiming another issuer must not be used.
    # The fetched issuer is not echoed: a discovery URL pointing elsewhere must not read back what it found.
    if document.get("issuer") != config.issuer:
        raise OIDCError("the discovery document names another issuer than the configured one")
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(field), str) or not document.get(field):
            raise OIDCError(f"discovery document lacks {field}")
    # Endpoints the server calls itself (token, keys, user info) obey the same outbound rules as the discovery URL.
    for field in ("token_endpoint", "jwks_uri", "userinfo_endpoint"):
        if document.get(field):
            try:
                outbound_check(str(document[field]))
            except OutboundRefused as exc:
                raise OIDCError(f"discovery document's {field} refused: {exc.message}") from exc
    r.set(key, json.dumps(document), ex=settings.ATRIUM_OIDC_CACHE_TTL_S)
    return document


def sso_connection_test_slot() -> bool:
    """True when this tenant may run a connection test now (one per ATRIUM_OIDC_TEST_INTERVAL_S, shared by every
    process through Redis): the test makes the server fetch URLs, so it must not become a scanning tool."""
    from django.db import connection

    key = f"atrium:oidc-test:{getattr(connection, 'schema_name', 'public')}"
    return bool(redis_client().set(key, b"1", nx=True, ex=max(1, int(settings.ATRIUM_OIDC_TEST_INTERVAL_S))))


def sso_connection_test(config: Any) -> int:
    """Fetch the discovery document and the key set now (not from the cache); the number of keys. OIDCError else."""
    document = discovery(config, refresh=True)
    keys = _fetch_json(str(document["jwks_uri"]), verify=config.verify_ssl).get("keys")
    if not isinstance(keys, list):
        raise OIDCError("the IdP's key set has no 'keys' list")
    return len(keys)


def _jwks(config: Any, *, refresh: bool) -> tuple[list[dict[str, Any]], bool]:
    """(keys, fetched_now). A refresh only happens when the per-issuer refresh slot is free."""
    uri = discovery(config)["jwks_uri"]
    key = _cache_key("jwks", uri)
    r = redis_client()
    cached = r.get(key)
    if cached is not None and not refresh:
        return list(json.loads(cached)), False
    # SET NX with a TTL is the rate limit: only the first unknown kid per interval refetches.
    slot = _cache_key("jwks-refresh", uri)
    if cached is not None and not r.set(slot, b"1", nx=True, ex=settings.ATRIUM_JWKS_REFRESH_INTERVAL_S):
        return list(json.loads(cached)), False
    document = _fetch_json(uri, verify=config.verify_ssl)
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise OIDCError("the IdP's key set has no 'keys' list")
    r.set(key, json.dumps(keys), ex=settings.ATRIUM_OIDC_CACHE_TTL_S)
    if cached is None:
        r.set(slot, b"1", ex=settings.ATRIUM_JWKS_REFRESH_INTERVAL_S)
    logger.info("fetched JWKS for issuer %s (%d keys)", config.issuer, len(keys))
    return keys, True


def _select_key(keys: list[dict[str, Any]], kid: str | None, alg: str) -> dict[str, Any] | None:
    candidates = [
        k for k in keys
        if k.get("kty") == _KTY[alg] and k.get("use", "sig") == "sig" and k.get("alg", alg) == alg
    ]
    if kid is None:
        # Without a kid the choice is only unambiguous when one key fits.
        return candidates[0] if len(candidates) == 1 else None
    matching = [k for k in candidates if k.get("kid") == kid]
    return matching[0] if matching else None


def signing_key(config: Any, *, kid: str | None, alg: str) -> jwt.PyJWK:
    keys, fetched = _jwks(config, refresh=False)
    jwk = _select_key(keys, kid, alg)
    if jwk is None and not fetched:
        keys, fetched = _jwks(config, refresh=True)
        jwk = _select_key(keys, kid, alg)
    if jwk is None:
        raise TokenRejected(f"token signed with an unknown key (kid {kid!r})", reason="unknown_kid")
    try:
        return jwt.PyJWK(jwk, algorithm=alg)
    except jwt.PyJWKError as exc:
        raise TokenRejected("the IdP's key for this token is unusable", reason="bad_key") from exc


def token_validate(config: Any, token: str, *, audiences: list[str], nonce: str | None = None) -> dict[str, Any]:
    """Claims of a token signed by the tenant's IdP; raises TokenRejected with the reason otherwise.

    Checks: algorithm in ALLOWED_ALGORITHMS, signature against the IdP's JWKS, exp (required), nbf,
    iss equal to the configured issuer, aud among `audiences`, sub present, and the nonce when given.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:  # not only DecodeError: PyJWT refuses a non-string `kid` with its base class
        raise TokenRejected("malformed token", reason="malformed") from exc
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise TokenRejected(f"token algorithm {alg!r} is not accepted (RS256 or ES256 only)", reason="algorithm")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenRejected("malformed token header", reason="malformed")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise TokenRejected("malformed token", reason="malformed") from exc
    # Refuse another issuer's token before any key lookup, so foreign tokens never trigger a JWKS
    # refetch; the issuer is checked again, verified, below.
    if unverified.get("iss") != config.issuer:
        raise TokenRejected("token issued by another issuer", reason="issuer")
    key = signing_key(config, kid=kid, alg=alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audiences,
            issuer=config.issuer,
            leeway=settings.ATRIUM_JWT_LEEWAY_S,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenRejected("token expired", reason="expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenRejected("token not yet valid (nbf/iat in the future)", reason="not_yet_valid") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenRejected("token issued by another issuer", reason="issuer") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenRejected("token audience is not this organisation's API", reason="audience") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected(f"token lacks the {exc.claim!r} claim", reason="missing_claim") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenRejected("token signature is invalid", reason="signature") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"token rejected ({type(exc).__name__})", reason="invalid") from exc
    if nonce is not None and claims.get("nonce") != nonce:
        raise TokenRejected("ID token nonce does not match this sign-in", reason="nonce")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenRejected("token subject is empty", reason="missing_claim")
    return claims


def claim_values(claims: dict[str, Any], path: str) -> list[str]:
    """Values of a groups/roles claim. Dotted paths reach nested claims (Keycloak's realm_access.roles)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            # Some IdPs use literal dotted or URL claim names; try the whole path as one key.
            value = claims.get(path)
            break
        value = value[part]
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []

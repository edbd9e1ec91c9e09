"""AWS Bedrock in one region, in each credential mode of the seed: default chain, keys, session, assumed role."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import anthropic
from django.conf import settings

from inference.errors import ProviderMisconfigured
from inference.types import ProviderTarget

MODES = ("default", "keys", "session", "assume_role", "profile")

# (role, external id, base key) -> (the session's keys, when to renew them, epoch seconds)
_assumed: dict[tuple[str, str, str], tuple[dict[str, str], float]] = {}
_assumed_lock = threading.Lock()


def base_url(region: str) -> str | None:
    template = settings.ATRIUM_BEDROCK_BASE_URL
    return template.format(region=region) if template else None


def assume_role(role_arn: str, region: str, *, external_id: str = "", session_name: str = "atrium",
                base_keys: tuple[str, str] | None = None) -> dict[str, str]:
    """Temporary keys for role_arn through STS, reused until they are due for renewal (assume_role_session)."""
    return assume_role_session(role_arn, region, external_id=external_id, session_name=session_name,
                               base_keys=base_keys)[0]


def assume_role_session(role_arn: str, region: str, *, external_id: str = "", session_name: str = "atrium",
                        base_keys: tuple[str, str] | None = None,
                        fresh: bool = False) -> tuple[dict[str, str], float]:
    """(keys, renew at): an STS session for role_arn, reused until it is due for renewal (refresh_point: five
    minutes before it ends by default); `fresh` asks STS for a new one regardless (the refresher renewing ahead).

    The identity that assumes the role is `base_keys` (access key, secret) when given, else the default chain.
    """
    import boto3
    import botocore.exceptions
    from botocore.config import Config

    from inference.providers.base import refresh_point

    key = (role_arn, external_id, base_keys[0] if base_keys else "")
    with _assumed_lock:
        cached = _assumed.get(key)
        if cached and not fresh and time.time() < cached[1]:
            return cached
    kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name,
                              "DurationSeconds": int(settings.ATRIUM_STS_SESSION_S)}
    if external_id:
        kwargs["ExternalId"] = external_id
    obtained = time.time()
    try:
        session = boto3.Session(aws_access_key_id=base_keys[0], aws_secret_access_key=base_keys[1]) \
            if base_keys else boto3.Session()
        sts = session.client("sts", region_name=region, endpoint_url=settings.ATRIUM_STS_ENDPOINT_URL,
                             config=Config(connect_timeout=settings.ATRIUM_CONNECT_TIMEOUT_S, read_timeout=10,
                                           retries={"max_attempts": 2, "mode": "standard"}))
        creds = sts.assume_role(**kwargs)["Credentials"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ProviderMisconfigured(f"bedrock:{region}: cannot assume role {role_arn}: {exc}") from exc
    keys = {
        "aws_access_key": creds["AccessKeyId"],
        "aws_secret_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    expiration: datetime = creds["Expiration"]
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    session_keys = (keys, refresh_point(obtained, expiration.timestamp()))
    with _assumed_lock:
        _assumed[key] = session_keys
    return session_keys


def _role(target: ProviderTarget) -> tuple[str, str, tuple[str, str] | None] | None:
    creds = target.credentials
    if (creds.get("mode") or "") != "assume_role" or not creds.get("role_arn"):
        return None
    base = (creds["access_key"], creds["secret_key"]) if creds.get("access_key") and creds.get("secret_key") \
        else None
    return str(creds["role_arn"]), str(creds.get("external_id", "")), base


def credential_kwargs(target: ProviderTarget) -> dict[str, Any]:
    creds = target.credentials
    mode = creds.get("mode") or ("keys" if creds.get("access_key") else "default")
    if mode not in MODES:
        raise ProviderMisconfigured(f"bedrock: unknown credential mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "default":
        # boto3's default chain: AWS_* environment variables, shared config, the instance or task role.
        return {}
    if mode == "profile":
        if not creds.get("profile"):
            raise ProviderMisconfigured("bedrock: profile mode needs a profile name")
        return {"aws_profile": creds["profile"]}
    if mode == "assume_role":
        if not creds.get("role_arn"):
            raise ProviderMisconfigured("bedrock: assume_role mode needs role_arn")
        role = _role(target)
        assert role is not None
        keys, _renew_at = assume_role_session(role[0], target.region, external_id=role[1], base_keys=role[2])
        return dict(keys)
    if not creds.get("access_key") or not creds.get("secret_key"):
        raise ProviderMisconfigured(f"bedrock: {mode} mode needs access_key and secret_key")
    kwargs = {"aws_access_key": creds["access_key"], "aws_secret_key": creds["secret_key"]}
    if mode == "session":
        if not creds.get("session_token"):
            raise ProviderMisconfigured("bedrock: session mode needs session_token")
        kwargs["aws_session_token"] = creds["session_token"]
    return kwargs


def build(target: ProviderTarget) -> anthropic.AnthropicBedrock:
    if not target.region:
        raise ProviderMisconfigured("bedrock: a region is required, e.g. bedrock:us-east-1")
    kwargs = credential_kwargs(target)
    if not kwargs and not _default_chain_has_credentials(target.region):
        raise ProviderMisconfigured(f"bedrock:{target.region}: no AWS credentials in the default chain")
    client = anthropic.AnthropicBedrock(aws_region=target.region, base_url=base_url(target.region), max_retries=0,
                                        timeout=settings.ATRIUM_REQUEST_DEADLINE_S, **kwargs)
    role = _role(target)
    if role is not None:
        _keys, renew_at = assume_role_session(role[0], target.region, external_id=role[1], base_keys=role[2])
        client._atrium_refresh_at = renew_at  # type: ignore[attr-defined]
    return client


def renew(client: anthropic.AnthropicBedrock, target: ProviderTarget) -> anthropic.AnthropicBedrock | None:
    """A new STS session for an assumed-role client, as a copy sharing its connection pool (swapped in whole, so
    a request never signs with half old, half new keys). None for keys that do not expire here."""
    role = _role(target)
    if role is None:
        return None
    keys, renew_at = assume_role_session(role[0], target.region, external_id=role[1], base_keys=role[2],
                                         fresh=True)
    renewed = client.copy(aws_access_key=keys["aws_access_key"], aws_secret_key=keys["aws_secret_key"],
                          aws_session_token=keys["aws_session_token"])
    renewed._atrium_refresh_at = renew_at  # type: ignore[attr-defined]
    return renewed


def _default_chain_has_credentials(region: str) -> bool:
    import boto3

    return boto3.Session(region_name=region).get_credentials() is not None

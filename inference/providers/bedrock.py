"""AWS Bedrock in one region, in each credential mode of the seed: default chain, keys, session, assumed role."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
from django.conf import settings

from inference.errors import ProviderMisconfigured
from inference.types import ProviderTarget

MODES = ("default", "keys", "session", "assume_role", "profile")

_assumed: dict[tuple[str, str, str], tuple[dict[str, str], datetime]] = {}
_assumed_lock = threading.Lock()


def base_url(region: str) -> str | None:
    template = settings.ATRIUM_BEDROCK_BASE_URL
    return template.format(region=region) if template else None


def assume_role(role_arn: str, region: str, *, external_id: str = "", session_name: str = "atrium",
                base_keys: tuple[str, str] | None = None) -> dict[str, str]:
    """Temporary keys for role_arn through STS, reused until five minutes before they expire.

    The identity that assumes the role is `base_keys` (access key, secret) when given, else the default chain.
    """
    import boto3
    import botocore.exceptions

    key = (role_arn, external_id, base_keys[0] if base_keys else "")
    with _assumed_lock:
        cached = _assumed.get(key)
        if cached and cached[1] - datetime.now(UTC) > timedelta(minutes=5):
            return cached[0]
    kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name, "DurationSeconds": 3600}
    if external_id:
        kwargs["ExternalId"] = external_id
    try:
        session = boto3.Session(aws_access_key_id=base_keys[0], aws_secret_access_key=base_keys[1]) \
            if base_keys else boto3.Session()
        sts = session.client("sts", region_name=region, endpoint_url=settings.ATRIUM_STS_ENDPOINT_URL)
        creds = sts.assume_role(**kwargs)["Credentials"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ProviderMisconfigured(f"bedrock:{region}: cannot assume role {role_arn}: {exc}") from exc
    keys = {
        "aws_access_key": creds["AccessKeyId"],
        "aws_secret_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    with _assumed_lock:
        _assumed[key] = (keys, creds["Expiration"])
    return keys


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
        base = (creds["access_key"], creds["secret_key"]) if creds.get("access_key") and creds.get("secret_key") \
            else None
        return assume_role(creds["role_arn"], target.region, external_id=creds.get("external_id", ""), base_keys=base)
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
    return anthropic.AnthropicBedrock(aws_region=target.region, base_url=base_url(target.region), max_retries=0,
                                      timeout=settings.ATRIUM_REQUEST_DEADLINE_S, **kwargs)


def _default_chain_has_credentials(region: str) -> bool:
    import boto3

    return boto3.Session(region_name=region).get_credentials() is not None

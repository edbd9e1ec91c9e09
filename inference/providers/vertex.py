"""Google Vertex AI in one region: application default credentials, a service-account key, or a static token."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC
from typing import Any

import anthropic
from django.conf import settings

from inference.errors import ProviderMisconfigured
from inference.types import ProviderTarget

MODES = ("adc", "service_account", "access_token")
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def base_url(region: str) -> str | None:
    """ATRIUM_VERTEX_BASE_URL with `{region}` replaced (as the Bedrock one), or None for Google's own endpoint."""
    template = settings.ATRIUM_VERTEX_BASE_URL
    return template.replace("{region}", region) if template else None


def credential_kwargs(target: ProviderTarget) -> dict[str, Any]:
    creds = target.credentials
    mode = creds.get("mode") or (
        "service_account" if creds.get("service_account_json")
        else "access_token" if creds.get("access_token") or settings.ATRIUM_VERTEX_ACCESS_TOKEN
        else "adc"
    )
    if mode not in MODES:
        raise ProviderMisconfigured(f"vertex: unknown credential mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "access_token":
        token = creds.get("access_token") or settings.ATRIUM_VERTEX_ACCESS_TOKEN
        if not token:
            raise ProviderMisconfigured("vertex: access_token mode needs a token")
        return {"access_token": token}
    if mode == "service_account":
        from google.oauth2 import service_account

        raw = creds.get("service_account_json") or ""
        try:
            info = json.loads(raw) if isinstance(raw, str) else dict(raw)
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=SCOPES)
        except (ValueError, TypeError, KeyError) as exc:
            raise ProviderMisconfigured(f"vertex: the service-account JSON is not valid ({exc})") from exc
        return {"credentials": credentials}
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _project = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise ProviderMisconfigured("vertex: no application default credentials") from exc
    return {"credentials": credentials}


def build(target: ProviderTarget) -> anthropic.AnthropicVertex:
    if not target.region:
        raise ProviderMisconfigured("vertex: a region is required, e.g. vertex:us-east5")
    creds = target.credentials
    project = creds.get("project_id") or settings.ATRIUM_VERTEX_PROJECT_ID or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project and creds.get("service_account_json"):
        try:
            project = json.loads(creds["service_account_json"]).get("project_id")
        except (ValueError, AttributeError):
            project = None
    if not project:
        raise ProviderMisconfigured("vertex: no project id (tenant credentials or ANTHROPIC_VERTEX_PROJECT_ID)")
    client = anthropic.AnthropicVertex(region=target.region, project_id=project, base_url=base_url(target.region),
                                       max_retries=0, timeout=settings.ATRIUM_REQUEST_DEADLINE_S,
                                       **credential_kwargs(target))
    if client.credentials is not None:
        # The token exchange happens now (process start, inference.warm), not in the first request's time.
        _refresh(client)
    return client


def _refresh(client: anthropic.AnthropicVertex) -> None:
    """Fetch a new access token into the client's credentials (in place: the token attribute is swapped whole)
    and note when the next one is due."""
    from google.auth.exceptions import GoogleAuthError

    from inference.providers.base import refresh_point

    credentials = client.credentials
    if credentials is None:
        return
    obtained = time.time()
    try:
        credentials.refresh(_auth_request())  # type: ignore[no-untyped-call]  # google-auth ships no types
    except GoogleAuthError as exc:
        raise ProviderMisconfigured(f"vertex: cannot obtain an access token: {type(exc).__name__}") from exc
    expiry = getattr(credentials, "expiry", None)  # naive UTC, as google-auth keeps it
    client._atrium_refresh_at = (  # type: ignore[attr-defined]
        refresh_point(obtained, expiry.replace(tzinfo=UTC).timestamp()) if expiry is not None else None)


def _auth_request() -> Any:
    import google.auth.transport.requests

    return google.auth.transport.requests.Request()


def renew(client: anthropic.AnthropicVertex, target: ProviderTarget) -> anthropic.AnthropicVertex | None:
    """A new Google access token ahead of the old one's expiry; None for a static token (nothing to renew)."""
    if client.credentials is None:
        return None
    _refresh(client)
    return client

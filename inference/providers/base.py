"""Build and cache the official SDK client for a target, and call the Messages API through it.

Every provider speaks the Anthropic Messages body; the SDK clients (Anthropic, AnthropicBedrock, AnthropicVertex)
differ only in how they are built, so each adapter module supplies a `build(target) -> client` function and the
calls here are shared. Clients are cached per target and credentials because building one (and its connection pool,
and for Bedrock a boto3 session) costs far more than a request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import anthropic
from anthropic import Stream
from django.conf import settings

from inference.errors import ProviderMisconfigured
from inference.types import ProviderTarget

Builder = Callable[[ProviderTarget], anthropic.Anthropic | anthropic.AnthropicBedrock | anthropic.AnthropicVertex]

_CACHE_SIZE = 256
_cache: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
_cache_lock = threading.Lock()


def _builders() -> dict[str, Builder]:
    from inference.providers import anthropic_api, bedrock, vertex

    return {"anthropic": anthropic_api.build, "bedrock": bedrock.build, "vertex": vertex.build}


def _base_urls() -> str:
    return "|".join(str(getattr(settings, name) or "") for name in
                    ("ATRIUM_ANTHROPIC_BASE_URL", "ATRIUM_BEDROCK_BASE_URL", "ATRIUM_VERTEX_BASE_URL"))


def _fingerprint(credentials: Mapping[str, Any]) -> str:
    blob = json.dumps(credentials, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def provider_client(target: ProviderTarget) -> Any:
    """The cached SDK client for this target and credentials; ProviderMisconfigured when it cannot be built."""
    # Base URLs are part of the key so a settings change (tests, the demo) never reuses a client of the old one.
    key = (target.key, _fingerprint(target.credentials), _base_urls())
    with _cache_lock:
        client = _cache.get(key)
        if client is not None:
            _cache.move_to_end(key)
            return client
    builder = _builders().get(target.provider)
    if builder is None:
        raise ProviderMisconfigured(f"unknown provider {target.provider!r}")
    try:
        client = builder(target)
    except ProviderMisconfigured:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as exc:
        # SDK constructors raise ValueError for a missing region/project, google-auth raises on a bad key file.
        raise ProviderMisconfigured(f"{target.key}: {type(exc).__name__}: {exc}") from exc
    with _cache_lock:
        _cache[key] = client
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return client


def provider_clients_clear() -> None:
    """Drop every cached client (credentials rotated, settings changed in tests)."""
    with _cache_lock:
        _cache.clear()


def _body(model_id: str, params: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    body = dict(params)
    body["model"] = model_id
    if stream:
        body["stream"] = True
    return body


def provider_create(client: Any, *, model_id: str, params: Mapping[str, Any], timeout: float | Any) -> dict[str, Any]:
    """One non-streaming Messages call; the Message JSON as the provider sent it.

    `cast_to=object` is the SDK's documented way to call an endpoint and get the raw JSON back: it skips building
    pydantic models we would only turn back into JSON. The Bedrock and Vertex clients rewrite `/v1/messages` to
    their own paths (invoke, rawPredict) and sign the request exactly as `messages.create` does. A client that
    offers `messages_create_raw(body, timeout)` (the Anthropic API's) is called through that instead.
    """
    direct = getattr(client, "messages_create_raw", None)  # a provider's faster path (anthropic_api)
    if direct is not None:
        result = direct(_body(model_id, params, False), timeout)
    else:
        result = client.post("/v1/messages", body=_body(model_id, params, False), cast_to=object,
                             options={"timeout": timeout})
    if not isinstance(result, dict):
        raise anthropic.APIResponseValidationError(response=None, body=result,  # type: ignore[arg-type]
                                                   message="provider answered with something other than a message")
    return result


class EventStream(Protocol):
    """What provider_stream returns: the SDK's `Stream`, or a provider's own (anthropic_api.DirectStream)."""

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


def provider_stream(client: Any, *, model_id: str, params: Mapping[str, Any], timeout: float | Any) -> EventStream:
    """Open a streaming Messages call. Status errors raise here; stream errors raise while iterating.

    A client that offers `messages_stream_raw(body, timeout)` (the Anthropic API's) is called through that."""
    direct = getattr(client, "messages_stream_raw", None)  # a provider's faster path (anthropic_api)
    if direct is not None:
        opened: EventStream = direct(_body(model_id, params, True), timeout)
        return opened
    stream: Stream[Any] = client.post(
        "/v1/messages", body=_body(model_id, params, True), cast_to=object, stream=True,
        stream_cls=Stream[object], options={"timeout": timeout},
    )
    return stream

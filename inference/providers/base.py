"""Build and cache the official SDK client for a target, and call the Messages API through it.

Every provider speaks the Anthropic Messages body; the SDK clients (Anthropic, AnthropicBedrock, AnthropicVertex)
differ only in how they are built, so each adapter module supplies a `build(target) -> client` function and the
calls here are shared. Clients are cached per target and credentials because building one (and its connection pool,
and for Bedrock a boto3 session) costs far more than a request; each process builds its targets' clients when it
starts and renews their credentials before they expire (inference.warm).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import anthropic
from anthropic import Stream
from django.conf import settings

from config.settings_once import setting
from inference.errors import ProviderMisconfigured
from inference.types import ProviderTarget

Builder = Callable[[ProviderTarget], anthropic.Anthropic | anthropic.AnthropicBedrock | anthropic.AnthropicVertex]
# (cached client, its target) -> a client with renewed credentials (None: build a new one).
Renewer = Callable[[Any, ProviderTarget], Any]

logger = logging.getLogger(__name__)

_CACHE_SIZE = 256


@dataclass
class _Entry:
    """A cached client, the target it was built for, and when its credentials are due for renewal (epoch seconds;
    None: they do not expire, or renew themselves)."""

    client: Any
    target: ProviderTarget
    refresh_at: float | None


_cache: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()
_cache_lock = threading.Lock()


def _forget_clients() -> None:
    """A forked child (gunicorn worker, Celery prefork child) must not share its parent's pooled connections."""
    global _cache_lock
    _cache.clear()
    _cache_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_clients)


def _builders() -> dict[str, Builder]:
    from inference.providers import anthropic_api, bedrock, vertex

    return {"anthropic": anthropic_api.build, "bedrock": bedrock.build, "vertex": vertex.build}


def _renewers() -> dict[str, Renewer]:
    from inference.providers import bedrock, vertex

    return {"bedrock": bedrock.renew, "vertex": vertex.renew}


def refresh_point(obtained: float, expires: float) -> float:
    """When credentials obtained at `obtained` and ending at `expires` (epoch seconds) should be renewed:
    ATRIUM_CREDENTIAL_REFRESH_AHEAD_S before they end, or half way through a shorter lifetime."""
    ahead = min(float(settings.ATRIUM_CREDENTIAL_REFRESH_AHEAD_S), max(expires - obtained, 0.0) / 2)
    return expires - ahead


def client_refresh_at(client: Any) -> float | None:
    """When an adapter said the client's credentials are due for renewal (it sets `_atrium_refresh_at`)."""
    value = getattr(client, "_atrium_refresh_at", None)
    return float(value) if value is not None else None


def _base_urls() -> str:
    return (f"{setting('ATRIUM_ANTHROPIC_BASE_URL') or ''}|{setting('ATRIUM_BEDROCK_BASE_URL') or ''}|"
            f"{setting('ATRIUM_VERTEX_BASE_URL') or ''}")


def _fingerprint(credentials: Mapping[str, Any]) -> str:
    """A digest of the credentials (the cache key holds no secret). Remembered for flat credentials (every call
    looks its client up: a JSON dump and a SHA-256 each time cost more than the lookup itself)."""
    try:
        return _flat_fingerprint(tuple(credentials.items()))
    except TypeError:  # a value that is no hashable (a service-account key as a dict)
        return _digest(credentials)


@functools.lru_cache(maxsize=1024)
def _flat_fingerprint(items: tuple[tuple[str, Any], ...]) -> str:
    return _digest(dict(items))


def _digest(credentials: Mapping[str, Any]) -> str:
    blob = json.dumps(credentials, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _key(target: ProviderTarget) -> tuple[str, str, str]:
    # Base URLs are part of the key so a settings change (tests, the demo) never reuses a client of the old one.
    return (target.key, _fingerprint(target.credentials), _base_urls())


def _build(target: ProviderTarget) -> Any:
    builder = _builders().get(target.provider)
    if builder is None:
        raise ProviderMisconfigured(f"unknown provider {target.provider!r}")
    try:
        return builder(target)
    except ProviderMisconfigured:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as exc:
        # SDK constructors raise ValueError for a missing region/project, google-auth raises on a bad key file.
        raise ProviderMisconfigured(f"{target.key}: {type(exc).__name__}: {exc}") from exc


def _store(key: tuple[str, str, str], entry: _Entry) -> None:
    with _cache_lock:
        _cache[key] = entry
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def provider_client(target: ProviderTarget) -> Any:
    """The cached SDK client for this target and credentials; ProviderMisconfigured when it cannot be built.

    Clients are normally built when the process starts and renewed ahead of their credentials' expiry by the
    refresher (inference.warm); a client whose renewal time has passed all the same (no refresher in this process)
    is renewed here, before the call, so a request never goes out with expired credentials."""
    key = _key(target)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
    if entry is not None:
        if entry.refresh_at is None or time.time() < entry.refresh_at:
            return entry.client
        return _renew(key, entry).client
    client = _build(target)
    _store(key, _Entry(client, target, client_refresh_at(client)))
    return client


def provider_client_ready(target: ProviderTarget) -> Any:
    """The cached client for this target if it is built and its credentials need no renewal now, else None:
    what a request's own thread may use without doing a client's building or a credential call itself."""
    key = _key(target)
    with _cache_lock:
        entry = _cache.get(key)
    if entry is None or (entry.refresh_at is not None and time.time() >= entry.refresh_at):
        return None
    return entry.client


def _renew(key: tuple[str, str, str], entry: _Entry) -> _Entry:
    """New credentials for a cached client: the adapter's `renew` (same connection pool), else a new client."""
    renewer = _renewers().get(entry.target.provider)
    try:
        client = renewer(entry.client, entry.target) if renewer is not None else None
    except ProviderMisconfigured:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as exc:
        raise ProviderMisconfigured(f"{entry.target.key}: {type(exc).__name__}: {exc}") from exc
    if client is None:
        client = _build(entry.target)
    renewed = _Entry(client, entry.target, client_refresh_at(client))
    _store(key, renewed)
    logger.info("provider credentials renewed", extra={"target": entry.target.key})
    return renewed


def provider_clients_due(horizon_s: float) -> list[tuple[str, float]]:
    """(target key, seconds left) of the cached clients due for renewal within `horizon_s`."""
    now = time.time()
    with _cache_lock:
        return [(e.target.key, e.refresh_at - now) for e in _cache.values()
                if e.refresh_at is not None and e.refresh_at - now <= horizon_s]


def provider_clients_renew(horizon_s: float) -> int:
    """Renew every cached client whose credentials are due within `horizon_s` seconds (the refresher's pass).
    Returns how many were renewed; a renewal that fails is logged and left for the next pass (or the request)."""
    now = time.time()
    with _cache_lock:
        due = [(k, e) for k, e in _cache.items() if e.refresh_at is not None and e.refresh_at - now <= horizon_s]
    renewed = 0
    for key, entry in due:
        try:
            _renew(key, entry)
            renewed += 1
        except ProviderMisconfigured as exc:
            logger.warning("provider credentials could not be renewed", extra={"target": entry.target.key,
                                                                                "reason": exc.message})
    return renewed


def provider_clients_cached() -> list[ProviderTarget]:
    with _cache_lock:
        return [e.target for e in _cache.values()]


def provider_clients_clear() -> None:
    """Drop every cached client (credentials rotated, settings changed in tests)."""
    with _cache_lock:
        _cache.clear()


def _body(model_id: str, params: Mapping[str, Any], stream: bool, betas: Sequence[str] = (),
          client: Any = None) -> dict[str, Any]:
    body = dict(params)
    body["model"] = model_id
    if stream:
        body["stream"] = True
    if betas and not isinstance(client, anthropic.Anthropic):
        body["anthropic_beta"] = list(betas)  # Bedrock and Vertex take the betas in the body
    return body


def _options(client: Any, timeout: Any, betas: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {"timeout": timeout}
    if betas and isinstance(client, anthropic.Anthropic):
        options["headers"] = {"anthropic-beta": ",".join(betas)}  # the Anthropic API takes the header
    return options


def provider_create(client: Any, *, model_id: str, params: Mapping[str, Any], timeout: float | Any,
                    betas: Sequence[str] = ()) -> dict[str, Any]:
    """One non-streaming Messages call; the Message JSON as the provider sent it.

    `cast_to=object` is the SDK's documented way to call an endpoint and get the raw JSON back: it skips building
    pydantic models we would only turn back into JSON. The Bedrock and Vertex clients rewrite `/v1/messages` to
    their own paths (invoke, rawPredict) and sign the request exactly as `messages.create` does. A client that
    offers `messages_create_raw(body, timeout)` (the Anthropic API's) is called through that instead.
    """
    direct = getattr(client, "messages_create_raw", None)  # a provider's faster path (anthropic_api)
    if direct is not None:
        result = direct(_body(model_id, params, False, betas, client), timeout, betas=betas)
    else:
        result = client.post("/v1/messages", body=_body(model_id, params, False, betas, client), cast_to=object,
                             options=_options(client, timeout, betas))
    if not isinstance(result, dict):
        raise anthropic.APIResponseValidationError(response=None, body=result,  # type: ignore[arg-type]
                                                   message="provider answered with something other than a message")
    return result


class EventStream(Protocol):
    """What provider_stream returns: the SDK's `Stream`, or a provider's own (anthropic_stream.DirectStream)."""

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class Limits(NamedTuple):
    """Read and connect timeouts, for a client that `bounds_first_event`: what its transport reads of the SDK's
    Timeout, without building one (httpx's checks) for every call."""

    read: float
    connect: float


def bounds_first_event(client: Any) -> bool:
    """Whether provider_stream can hold this client's first event to a deadline (`first_event_by`) by itself,
    without a thread watching the clock: the Anthropic API's direct path can (its socket's timeouts)."""
    return getattr(client, "messages_stream_raw", None) is not None


def provider_stream(client: Any, *, model_id: str, params: Mapping[str, Any], timeout: float | Any,
                    betas: Sequence[str] = (), first_event_by: float | None = None) -> EventStream:
    """Open a streaming Messages call. Status errors raise here; stream errors raise while iterating.

    A client that offers `messages_stream_raw(body, timeout)` (the Anthropic API's) is called through that.
    `first_event_by` (time.monotonic(); only for a client that `bounds_first_event`): APITimeoutError unless the
    first event has arrived by then."""
    direct = getattr(client, "messages_stream_raw", None)  # a provider's faster path (anthropic_api)
    if direct is not None:
        opened: EventStream = direct(_body(model_id, params, True, betas, client), timeout, betas=betas,
                                     first_event_by=first_event_by)
        return opened
    if first_event_by is not None:
        raise TypeError(f"{type(client).__name__} cannot bound its first event; run it in the attempt pool")
    stream: Stream[Any] = client.post(
        "/v1/messages", body=_body(model_id, params, True, betas, client), cast_to=object, stream=True,
        stream_cls=Stream[object], options=_options(client, timeout, betas),
    )
    return stream

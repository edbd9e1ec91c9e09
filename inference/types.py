"""Plain typed values the inference core takes and returns; no Django request, user or tenant in here."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Provider = Literal["anthropic", "bedrock", "vertex"]


@dataclass(frozen=True)
class ProviderTarget:
    """One place a request can go: a provider in a region, with the credentials to use there.

    `credentials` is the provider's section of the tenant's encrypted settings (see tenants.models), or empty to
    use the environment (ANTHROPIC_API_KEY, the AWS default chain, Google application default credentials).
    """

    provider: Provider
    region: str = ""
    credentials: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)
    # The tenant's own time-to-first-byte budget (seconds); None: the platform's setting for this provider.
    first_byte_timeout_s: float | None = field(default=None, compare=False)
    # Whose account the credentials are (inference.targets.credential_scope): "platform" for the environment's.
    scope: str = field(default="platform", compare=False)

    @property
    def key(self) -> str:
        """`anthropic`, `bedrock:eu-west-1`, `vertex:us-east5`: the name used in provider orders and the breaker."""
        return f"{self.provider}:{self.region}" if self.region else self.provider

    @property
    def breaker_name(self) -> str:
        """The circuit breaker's name: provider, region and credential scope (`bedrock:us-east-1@aws:1234…`);
        the platform's own credentials keep the plain target key."""
        return self.key if self.scope == "platform" else f"{self.key}@{self.scope}"


@dataclass(frozen=True)
class MessageRequest:
    """An Anthropic Messages API call: `model` is a tier (`sonnet`) or a model id, `params` everything else.

    `params` holds the Messages API body without `model` and `stream` (messages, max_tokens, system, tools,
    temperature, metadata…); the router passes it through unchanged apart from the model id.
    """

    model: str
    params: Mapping[str, Any]
    # anthropic-beta names the caller sent and its tenant allows (access.policy.betas_allowed): the Anthropic API
    # gets them as the anthropic-beta header, Bedrock and Vertex as the body's anthropic_beta list.
    betas: tuple[str, ...] = ()


AttemptOutcome = Literal["ok", "failover", "skipped", "error", "cancelled"]


@dataclass(frozen=True)
class Attempt:
    """What happened at one target: answered, failed over (an error, or no first byte within its budget), skipped
    (breaker open), a caller error, or cancelled (a hedged attempt another target beat)."""

    target: str
    model_id: str
    outcome: AttemptOutcome
    status: int | None = None
    reason: str = ""
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model_id": self.model_id,
            "outcome": self.outcome,
            "status": self.status,
            "reason": self.reason,
            "latency_ms": round(self.latency_ms, 1),
        }


class _MessageUsage:
    """Token counts read from the `usage` of the (accumulated) Message JSON."""

    message: dict[str, Any]

    @property
    def input_tokens(self) -> int:
        return int((self.message.get("usage") or {}).get("input_tokens") or 0)

    @property
    def output_tokens(self) -> int:
        return int((self.message.get("usage") or {}).get("output_tokens") or 0)


@dataclass
class RouterResult(_MessageUsage):
    """A completed (non-streaming) call. `message` is the Anthropic Message JSON exactly as the provider sent it."""

    message: dict[str, Any]
    provider: str
    region: str
    model_id: str
    latency_ms: float
    attempts: list[Attempt]


_READY_PREFIXES = {name: (b'{"type": "' + name + b'"', b'{"type":"' + name + b'"') for name in
                   (b"content_block_start", b"content_block_delta", b"content_block_stop", b"message_delta")}


class RouterStream(_MessageUsage):
    """A streaming call already connected to one target; iterate it for Anthropic stream events (dicts).

    Failover happened (if at all) before this object was returned: the first event is already in hand. If the
    provider fails after that, iteration yields one final `{"type": "error", "error": {...}}` event and
    `incomplete` becomes True. After iteration, `message` holds the accumulated Message JSON (content so far,
    usage, stop_reason), whether or not the stream completed.
    """

    def __init__(
        self,
        *,
        events: Iterator[dict[str, Any]],
        provider: str,
        region: str,
        model_id: str,
        attempts: list[Attempt],
        started_at: float,
        close: Any = None,
    ) -> None:
        self._events = events
        self._close = close
        self.provider = provider
        self.region = region
        self.model_id = model_id
        self.attempts = attempts
        self.started_at = started_at
        self.incomplete = False
        self.error: dict[str, Any] | None = None
        self._message: dict[str, Any] = {}
        self._message_from: Callable[[], dict[str, Any]] | None = None
        self.first_event_ms: float | None = None
        self.latency_ms: float = 0.0
        # The provider stream's next event if it has arrived already ((name, data) or None; inference.router)
        self.upstream_ready: Callable[[], tuple[bytes, bytes] | None] | None = None
        # (events, pieces): each makes, given this stream, the iterator of `iter(stream)` or of `pieces()`
        # (inference.router.route_stream: inference.streaming's relay and relay_pieces); the first asked for is made.
        self.relays: tuple[Callable[[RouterStream], Iterator[Any]], Callable[[RouterStream], Iterator[Any]]] | None
        self.relays = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        relays = self.relays
        if relays is not None:
            self.relays = None
            self._events = relays[0](self)
        return self._events

    def pieces(self) -> Iterator[list[Any]]:
        """The events read by read instead of one by one (iterate the stream or this, not both): lists of what
        arrived together, each part the bytes of events relayed as they came (their SSE frames) or an event (a
        dict) to frame; the first list holds the first event (inference.streaming.relay_pieces)."""
        relays = self.relays
        if relays is not None:
            self.relays = None
            return relays[1](self)
        return ([event] for event in self._events)

    @property
    def message(self) -> dict[str, Any]:
        """The Message accumulated so far (inference.streaming.relay folds it as the events go by)."""
        source = self._message_from
        return source() if source is not None else self._message

    @message.setter
    def message(self, value: dict[str, Any]) -> None:
        self._message, self._message_from = value, None

    def message_from(self, source: Callable[[], dict[str, Any]]) -> None:
        """Read `message` from `source()` from now on (a fold that completes the Message when asked)."""
        self._message_from = source

    def ready(self) -> bool:
        """Whether the next event has arrived already, so that iterating once more will not wait for the provider
        (False when in doubt). Only deltas, block starts and stops and message_delta are told ready: not a
        message_stop (the gateway may hold it until the call's records are durable), nor an error or anything
        whose data does not say its type first."""
        probe = self.upstream_ready
        upcoming = probe() if probe is not None else None
        if upcoming is None:
            return False
        prefixes = _READY_PREFIXES.get(upcoming[0])
        return prefixes is not None and upcoming[1].startswith(prefixes)

    def close(self) -> None:
        """Release the upstream connection (the client went away, or the caller is done)."""
        if self._close is not None:
            self._close()
            self._close = None

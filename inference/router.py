"""The failover router: try each healthy target in order with the model id it knows, within one deadline.

Errors are classified once (`classify`): the caller's own mistakes (400, 413, 422) return as they are; a provider's
trouble (connection errors, timeouts, 408, 429, 5xx, 529, no first byte within the attempt's budget) fails over
and counts against that target's breaker; a credential error (401, 403, missing credentials) fails over and counts
against the breaker too, which is keyed by provider, region *and credential scope*, so a tenant's bad key or its
own account's rate limit opens only that tenant's breaker. A 404 (the model is not offered there) and missing
credentials fail over without touching the breaker.

Each attempt has a time-to-first-byte budget (`inference.attempts`): the provider is always asked for a stream, so
its first event comes before it generates anything, and a provider that has not produced one within the budget is
abandoned (its connection closed as soon as it answers) while the next target is tried. With hedging, the next
target is started after a delay even before the budget ends, and the first to answer wins.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
from django.conf import settings

from config.settings_once import setting
from inference import breaker
from inference.attempts import Opened, open_first
from inference.catalog.selectors import CatalogEntry, catalog_entry
from inference.errors import (
    BetaUnsupported,
    ModelNotFound,
    ProviderMisconfigured,
    ProviderUnavailable,
    UpstreamRequestError,
)
from inference.streaming import accumulate, close_quietly, collect, relay, relay_pieces
from inference.tracing import AttemptLog
from inference.types import Attempt, MessageRequest, ProviderTarget, RouterResult, RouterStream

__all__ = ["accumulate", "classify", "route", "route_stream"]

logger = logging.getLogger(__name__)

CALLER_ERRORS = frozenset({400, 413, 422})
MISCONFIGURED = frozenset({401, 403, 404})
CREDENTIAL_ERRORS = frozenset({401, 403})

Kind = Literal["caller", "transient", "misconfigured"]


@dataclass(frozen=True)
class Failure:
    kind: Kind
    status: int | None
    reason: str
    body: Any = None

    @property
    def counts_against_breaker(self) -> bool:
        """Provider trouble and a provider's refusal of the credentials (401, 403) do; a caller error, a model the
        provider lacks (404) and credentials missing here (no network call was made) do not."""
        return self.kind == "transient" or self.status in CREDENTIAL_ERRORS


def classify(exc: BaseException) -> Failure:
    """What an exception from a provider call means for failover."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else None
        detail = _error_message(body) or type(exc).__name__
        if status < 400:  # an `event: error` inside a 200 stream
            return Failure("transient", None, f"stream error: {detail}", body)
        reason = f"HTTP {status}: {detail}"
        if status in CALLER_ERRORS:
            return Failure("caller", status, reason, body)
        if status in MISCONFIGURED:
            return Failure("misconfigured", status, reason, body)
        return Failure("transient", status, reason, body)
    if isinstance(exc, anthropic.APITimeoutError):
        return Failure("transient", None, "timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return Failure("transient", None, f"connection error: {_root_cause(exc)}")
    if isinstance(exc, ProviderMisconfigured):
        return Failure("misconfigured", None, f"misconfigured: {exc.message}")
    if isinstance(exc, anthropic.APIResponseValidationError):
        return Failure("transient", None, "malformed response from provider")
    if _is_credentials_error(exc):
        return Failure("misconfigured", None, f"misconfigured: {type(exc).__name__}: {exc}")
    raise exc


def _is_credentials_error(exc: BaseException) -> bool:
    # Signing happens inside the SDK call: boto3 without credentials raises RuntimeError / NoCredentialsError,
    # google-auth raises RefreshError / DefaultCredentialsError.
    module = type(exc).__module__
    if module.startswith(("botocore", "google.auth")):
        return True
    return isinstance(exc, RuntimeError) and "credentials" in str(exc).lower()


def _error_message(body: dict[str, Any] | None) -> str:
    if not body:
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message", ""))[:200]
    return str(body.get("message", body.get("Message", "")))[:200]


def _root_cause(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return type(cause).__name__ if cause is not None else "unknown"


def _resolve(request: MessageRequest) -> CatalogEntry:
    entry = catalog_entry(request.model)
    if entry is None:
        raise ModelNotFound(f"model: {request.model} is not a known model or tier")
    return entry


def beta_refused(betas: Sequence[str], provider: str) -> str:
    """The first of `betas` that `provider` does not accept (ATRIUM_BETA_PROVIDERS), or ""."""
    for name in betas:
        accepted: Mapping[str, Sequence[str]] = settings.ATRIUM_BETA_PROVIDERS
        providers = accepted.get(name)
        if providers is not None and provider not in providers:
            return name
    return ""


def first_byte_budget(target: ProviderTarget) -> float:
    """The target's time-to-first-byte budget: the tenant's own, else ATRIUM_FIRST_BYTE_TIMEOUTS for the target
    (`bedrock:us-east-1`) or its provider (`bedrock`), else ATRIUM_FIRST_BYTE_TIMEOUT_S."""
    if target.first_byte_timeout_s is not None:
        return float(target.first_byte_timeout_s)
    per: Mapping[str, Any] = setting("ATRIUM_FIRST_BYTE_TIMEOUTS")  # read once (config.settings_once): every call
    value = per.get(target.key, per.get(target.provider))
    return float(value) if value is not None else float(setting("ATRIUM_FIRST_BYTE_TIMEOUT_S"))


class Walk:
    """Walks the targets: resolves the model id, consults the breaker, records each attempt."""

    def __init__(self, request: MessageRequest, targets: Sequence[ProviderTarget], deadline_s: float | None,
                 admissions: Mapping[str, int] | None = None, hedge_delay_s: float | None = None) -> None:
        self.entry = _resolve(request)
        # Breaker answers the caller already obtained (the gateway asks with its quota script), by target key;
        # each is used once, for the first visit of its target.
        self.admissions = dict(admissions or {})
        self.request = request
        self.targets = list(targets)
        self.position = 0
        self.served = False
        self.started = time.monotonic()
        self.deadline = self.started + (deadline_s if deadline_s is not None else setting("ATRIUM_REQUEST_DEADLINE_S"))
        hedge = setting("ATRIUM_HEDGE_DELAY_MS") / 1000 if hedge_delay_s is None else hedge_delay_s
        self.hedge_delay_s: float | None = hedge if hedge and hedge > 0 else None
        self.attempts: list[Attempt] = AttemptLog()  # each recorded attempt is also a span (inference/tracing.py)
        self.beta_skipped = ""  # a beta name some target did not accept (ATRIUM_BETA_PROVIDERS)

    def next_candidate(self) -> tuple[ProviderTarget, str, int] | None:
        """The next target to call (its model id and breaker answer), or None when none is left."""
        while self.position < len(self.targets):
            target = self.targets[self.position]
            self.position += 1
            model_id = self.entry.provider_model_id(target.provider, target.region)
            if model_id is None:
                self.attempts.append(Attempt(target.key, "", "skipped", reason="model not offered by this provider"))
                continue
            refused = beta_refused(self.request.betas, target.provider)
            if refused:
                self.beta_skipped = refused
                self.attempts.append(Attempt(target.key, model_id, "skipped",
                                             reason=f"anthropic-beta {refused} not accepted by this provider"))
                continue
            self.served = True
            admission = self.admissions.pop(target.key, None)
            if admission is None:
                admission = breaker.breaker_allow(target.breaker_name)
            if admission == breaker.SKIP:
                self.attempts.append(Attempt(target.key, model_id, "skipped", reason="circuit open"))
                continue
            return target, model_id, admission
        return None

    def exhausted(self, *, deadline: bool = False) -> Exception:
        if deadline:
            return ProviderUnavailable(self.attempts, deadline_exceeded=True)
        if not self.served and self.beta_skipped:
            return BetaUnsupported(f"anthropic-beta: {self.beta_skipped} is not accepted by any provider this "
                                   f"organisation uses for {self.entry.model_id}.")
        if not self.served and self.targets:
            return ModelNotFound(f"model: {self.entry.model_id} is not offered by any provider of this organisation")
        return ProviderUnavailable(self.attempts)

    def failed(self, target: ProviderTarget, model_id: str, exc: BaseException, t0: float) -> Failure:
        failure = classify(exc)
        latency = (time.monotonic() - t0) * 1000
        if failure.kind == "caller":
            self.attempts.append(Attempt(target.key, model_id, "error", failure.status, failure.reason, latency))
            # The provider answered sensibly, so it is healthy; a half-open probe ends here too.
            breaker.breaker_record_success(target.breaker_name)
            raise UpstreamRequestError(failure.status or 400, failure.body, failure.reason, self.attempts,
                                       provider=target.provider, region=target.region,
                                       model_id=model_id) from exc
        self.attempts.append(Attempt(target.key, model_id, "failover", failure.status, failure.reason, latency))
        if failure.counts_against_breaker:
            breaker.breaker_record_failure(target.breaker_name, reason=failure.reason)
        logger.warning("provider attempt failed", extra={"target": target.key, "model_id": model_id,
                                                          "status": failure.status, "reason": failure.reason})
        return failure

    def slow(self, target: ProviderTarget, model_id: str, budget: float | None, t0: float) -> None:
        """No first byte within the budget (None: before the request's deadline): a failure of the provider, for
        its breaker too."""
        reason = "timeout" if budget is None else f"no first byte within {budget:g} s"
        self.attempts.append(Attempt(target.key, model_id, "failover", None, reason,
                                     (time.monotonic() - t0) * 1000))
        breaker.breaker_record_failure(target.breaker_name, reason=reason)
        logger.warning("provider attempt too slow", extra={"target": target.key, "model_id": model_id,
                                                            "reason": reason})

    def cancelled(self, target: ProviderTarget, model_id: str, t0: float) -> None:
        self.attempts.append(Attempt(target.key, model_id, "cancelled", None, "another target answered first",
                                     (time.monotonic() - t0) * 1000))

    def succeeded(self, target: ProviderTarget, model_id: str, admission: int, t0: float) -> None:
        self.attempts.append(Attempt(target.key, model_id, "ok", 200, "", (time.monotonic() - t0) * 1000))
        if admission != breaker.ALLOW_CLEAN:
            breaker.breaker_record_success(target.breaker_name)


def route(
    request: MessageRequest, targets: Sequence[ProviderTarget], *, deadline_s: float | None = None,
    admissions: Mapping[str, int] | None = None, hedge_delay_s: float | None = None,
) -> RouterResult:
    """Call the first target that answers. Raises UpstreamRequestError, ModelNotFound or ProviderUnavailable.

    The provider is asked for a stream (so its first byte arrives before generation, and the time-to-first-byte
    budget means the same thing as for a streaming caller); the events are folded into the Message JSON. Since
    nothing has reached the caller yet, a stream that breaks half way fails over too.

    `admissions`: breaker answers (breaker_allow's codes) already obtained for some targets, used instead of
    asking again. `hedge_delay_s`: start the next target this long after the last one (None: the setting)."""
    walk = Walk(request, targets, deadline_s, admissions, hedge_delay_s)
    while True:
        opened = open_first(walk, request.params, first_byte_budget)
        try:
            stream = opened.stream  # a direct stream (framed False) folds its events itself
            message = collect(opened.first, opened.iterator,
                              stream.fold_rest if getattr(stream, "framed", None) is False else None)
        except Exception as exc:
            close_quietly(opened.stream)
            walk.failed(opened.target, opened.model_id, exc, opened.t0)
            continue
        walk.succeeded(opened.target, opened.model_id, opened.admission, opened.t0)
        return RouterResult(
            message=message,
            provider=opened.target.provider,
            region=opened.target.region,
            model_id=opened.model_id,
            latency_ms=(time.monotonic() - walk.started) * 1000,
            attempts=walk.attempts,
        )


def route_stream(
    request: MessageRequest, targets: Sequence[ProviderTarget], *, deadline_s: float | None = None,
    admissions: Mapping[str, int] | None = None, hedge_delay_s: float | None = None,
) -> RouterStream:
    """Open a stream on the first target that produces an event; failover happens only before that event."""
    walk = Walk(request, targets, deadline_s, admissions, hedge_delay_s)
    opened: Opened = open_first(walk, request.params, first_byte_budget)
    target = opened.target
    framed = getattr(opened.stream, "framed", None) is False
    if framed:
        opened.stream.framed = True  # the events after the first are relayed with their bytes (config.http.sse)
    walk.succeeded(target, opened.model_id, opened.admission, opened.t0)
    result = RouterStream(
        events=iter(()), provider=target.provider, region=target.region, model_id=opened.model_id,
        attempts=walk.attempts, started_at=walk.started, close=lambda s=opened.stream: close_quietly(s),
    )
    result.first_event_ms = (time.monotonic() - walk.started) * 1000
    if framed:
        result.upstream_ready = opened.stream.ready

    def on_failure(exc: BaseException) -> str:
        failure = classify(exc)
        if failure.kind == "transient":
            breaker.breaker_record_failure(target.breaker_name, reason=failure.reason)
        return failure.reason

    # Iterated event by event (relay), or read by read (relay_pieces: /v1's relay, config.http.sse through the
    # gateway's Events.pieces); made when the first of the two is asked for (RouterStream.relays).
    result.relays = (functools.partial(relay, first=opened.first, rest=opened.iterator, on_failure=on_failure),
                     functools.partial(relay_pieces, first=opened.first, rest=opened.iterator, on_failure=on_failure,
                                       relayed=opened.stream.relayed if framed else None))
    return result

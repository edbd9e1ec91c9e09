"""One OpenTelemetry span per provider attempt (config/tracing.py sets tracing up).

The router records every attempt in one list; `AttemptLog` is that list, and turns each recorded attempt into a
span `provider.attempt` with its provider, region, model and outcome, timed from the attempt's own latency. Kept
here, apart from the router's logic, so the router stays one line away from tracing.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from inference.types import Attempt

_tracer = trace.get_tracer("atrium.inference")


def attempt_span(attempt: Attempt) -> None:
    # No tracer provider set (config/tracing.py sets one when tracing is on): `_tracer`, OpenTelemetry's proxy
    # tracer, would make a span that records nothing, as it decides by this same global. (Were it ever gone from
    # the API, spans are made.)
    if getattr(trace, "_TRACER_PROVIDER", trace) is None:
        return
    provider, _, region = attempt.target.partition(":")
    end = time.time_ns()
    start = end - int(attempt.latency_ms * 1_000_000)
    attributes: dict[str, Any] = {
        "atrium.provider": provider,
        "atrium.region": region,
        "atrium.model": attempt.model_id,
        "atrium.outcome": attempt.outcome,
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": attempt.model_id,
    }
    if attempt.status is not None:
        attributes["http.response.status_code"] = attempt.status
    if attempt.reason:
        attributes["atrium.reason"] = attempt.reason[:200]
    span = _tracer.start_span("provider.attempt", start_time=start, attributes=attributes)
    if attempt.outcome in ("failover", "error"):
        span.set_status(Status(StatusCode.ERROR, attempt.reason[:200] or None))
    span.end(end_time=end)


class AttemptLog(list[Attempt]):
    """The router's list of attempts; each appended attempt also becomes a span."""

    def append(self, attempt: Attempt) -> None:
        super().append(attempt)
        attempt_span(attempt)

"""OpenTelemetry tracing: the official instrumentation of Django, psycopg, Redis, Celery and urllib3, plus one span
per provider attempt (inference/tracing.py). docs/observability.md.

Set up once per process (gunicorn's post_fork, Celery's worker_process_init) by `tracing_setup()`:
- ATRIUM_OTEL_EXPORTER (default `none`): `otlp` sends spans with the OTLP/HTTP exporter, configured by the standard
  OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout); `console` prints them (development); `none` sends
  them nowhere.
- ATRIUM_TRACING (default `auto`): instrument when an exporter is configured, and only then: the instrumentation
  wraps every request, statement, Redis command and upstream call, which cost a /v1 call more than all of
  Atrium's own checks (docs/benchmarks.md) to make spans nobody receives. `true`: spans even without an exporter
  (logs and audit entries carry a trace id, an incoming W3C `traceparent` joins the caller's trace); `false`:
  no instrumentation at all.
- OTEL_SERVICE_NAME (default `atrium-<role>`), OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG as the SDK reads them.

Spans never carry prompts, completions, keys or SQL parameters: the DB instrumentation records the statement text
without parameter values, the HTTP client spans carry method, URL and status (never headers or bodies),
and the Redis instrumentation is told not to capture command arguments.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_configured: dict[str, Any] = {}


def _exporter_kind() -> str:
    kind = os.environ.get("ATRIUM_OTEL_EXPORTER", "none").strip().lower()
    if kind not in {"none", "otlp", "console"}:
        raise SystemExit(f"atrium: ATRIUM_OTEL_EXPORTER must be none, otlp or console, not {kind!r}")
    return kind


def _enabled() -> bool:
    """ATRIUM_TRACING: `auto` (the default) is on exactly when ATRIUM_OTEL_EXPORTER names an exporter."""
    value = os.environ.get("ATRIUM_TRACING", "auto").strip().lower()
    if value in {"", "auto"}:
        return _exporter_kind() != "none"
    return value not in {"0", "false", "no", "off"}


def tracing_setup(*, role: str, exporter: Any = None) -> bool:
    """Install the tracer provider and instrumentations for this process. Idempotent. `exporter` (tests) replaces
    the one ATRIUM_OTEL_EXPORTER names. Returns whether tracing is on."""
    with _lock:
        if _configured.get("instrumented"):
            return True
        if not _enabled() and exporter is None:
            return False
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        # OpenTelemetry lets a process set its tracer provider once: a second setup (tests) reuses it.
        provider = _configured.get("provider")
        fresh = provider is None
        if provider is None:
            resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", f"atrium-{role}")})
            provider = TracerProvider(resource=resource)
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif fresh:
            kind = _exporter_kind()
            if kind == "otlp":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            elif kind == "console":
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        if fresh:
            trace.set_tracer_provider(provider)
            _configured["provider"] = provider
        _instrument()
        _configured["instrumented"] = True
        return True


def _instrumentors() -> list[Any]:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    return [DjangoInstrumentor(), PsycopgInstrumentor(), RedisInstrumentor(), CeleryInstrumentor(),
            URLLib3Instrumentor()]


def tracing_teardown() -> None:
    """Undo the instrumentation (tests); the tracer provider stays, as OpenTelemetry sets it once per process."""
    with _lock:
        if _configured.pop("instrumented", None):
            for instrumentor in _instrumentors():
                instrumentor.uninstrument()


def _instrument() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    DjangoInstrumentor().instrument(excluded_urls="healthz,readyz,metrics")
    # enable_commenter off: a comment with the trace id in every statement would defeat PgBouncer-free statement
    # caching and put ids into PostgreSQL's logs.
    PsycopgInstrumentor().instrument(enable_commenter=False)
    RedisInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    URLLib3Instrumentor().instrument()


def tracing_on() -> bool:
    """Whether this process is instrumented (the Django instrumentation's middleware is then in the chain)."""
    return "instrumented" in _configured


def tracing_provider() -> Any:
    return _configured.get("provider")


def current_trace_id() -> str:
    """The active trace's id (32 hex digits), or "" when there is none."""
    if "provider" not in _configured:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def current_span_ids() -> dict[str, str]:
    """trace_id and span_id of the active span, for log lines; empty when tracing is off."""
    if "provider" not in _configured:
        return {}
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}

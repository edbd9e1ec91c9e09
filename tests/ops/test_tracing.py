"""OpenTelemetry: one /v1/messages call with a failover, its spans captured by an in-memory exporter
(the trace shown in docs/observability.md), the trace id in the audit entry and in JSON log lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def spans() -> Iterator[Any]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from config import tracing

    exporter = InMemorySpanExporter()
    tracing.tracing_setup(role="test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.tracing_teardown()
        exporter.shutdown()


def tree(finished: list[Any]) -> list[str]:
    """The spans of one trace as an indented outline, children in start order."""
    by_parent: dict[Any, list[Any]] = {}
    for span in finished:
        by_parent.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    lines: list[str] = []

    def walk(parent: Any, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_time):
            keys = [k for k in span.attributes if k.startswith(("atrium.", "http.", "db.system", "url.", "server."))]
            shown = ", ".join(f"{k}={span.attributes[k]}" for k in keys if k not in ("url.full",))
            ms = (span.end_time - span.start_time) / 1e6
            lines.append(f"{'  ' * depth}{span.name} [{span.kind.name.lower()}, {ms:.1f} ms] {shown}".rstrip())
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def test_a_failover_call_is_one_trace_with_a_span_per_attempt(spans: Any, sim: Any, client_a: Any, tenant_a: Any,
                                                              make_user: Any, api_key_for: Any, consented: Any,
                                                              in_tenant: Any) -> None:
    from audit.models import AuditEntry
    from tests.chat.conftest import body, post_messages

    user = make_user(tenant_a, "power_user")
    consented(tenant_a, user)
    key = api_key_for(tenant_a, user)
    sim.faults.set("anthropic", "", status=529)
    response = post_messages(client_a, key, body("Trace me"))
    assert response.status_code == 200, response.content

    finished = spans.get_finished_spans()
    server = [s for s in finished if s.kind.name == "SERVER"]
    assert len(server) == 1, [s.name for s in finished]
    trace_id = server[0].context.trace_id
    outside = [s for s in finished if s.context.trace_id != trace_id]
    # Outside the call's trace are only the fixtures' own Redis commands (clearing quotas and breakers): no attempt,
    # no request, no provider HTTP call escaped it.
    escaped = [s.name for s in outside if s.name == "provider.attempt" or s.kind.name == "SERVER"
               or "http.method" in s.attributes or "http.request.method" in s.attributes]
    assert not escaped, escaped
    assert all(s.attributes.get("db.system") == "redis" for s in outside), [s.name for s in outside]
    finished = [s for s in finished if s.context.trace_id == trace_id]
    attempts = [s for s in finished if s.name == "provider.attempt"]
    assert [(s.attributes["atrium.provider"], s.attributes["atrium.region"], s.attributes["atrium.outcome"])
            for s in attempts] == [("anthropic", "", "failover"), ("bedrock", "us-east-1", "ok")]
    assert attempts[0].attributes["http.response.status_code"] == 529
    assert attempts[0].status.status_code.name == "ERROR"
    assert {s.attributes["atrium.model"] for s in attempts} >= {"claude-sonnet-5-5"}
    assert all(s.parent is not None and s.parent.span_id == server[0].context.span_id for s in attempts)
    assert any(s.name in ("EVALSHA", "EVAL") or "redis" in str(s.attributes.get("db.system", "")) for s in finished)
    assert any(s.kind.name == "CLIENT" and "529" in str(s.attributes.get("http.response.status_code",
                                                                         s.attributes.get("http.status_code")))
               for s in finished), "the urllib3 span of the refused Anthropic request"
    for span in finished:  # nothing the caller sent ends up in a span
        assert "Trace me" not in json.dumps({k: str(v) for k, v in span.attributes.items()})
        assert key not in json.dumps({k: str(v) for k, v in span.attributes.items()})

    with in_tenant(tenant_a):
        entry = AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).get()
    assert entry.metadata["trace_id"] == format(trace_id, "032x")
    print("\n" + "\n".join(tree(finished)))


def test_json_log_lines_carry_the_trace_id(spans: Any) -> None:
    from opentelemetry import trace

    from config.logging import JsonFormatter

    record = logging.makeLogRecord({"name": "atrium.test", "levelname": "WARNING", "msg": "provider attempt failed"})
    with trace.get_tracer("atrium.test").start_as_current_span("request") as span:
        line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")
    outside = json.loads(JsonFormatter().format(record))
    assert "trace_id" not in outside


# A fresh process sets tracing up as config/wsgi.py does, then says whether a database statement, a Redis call and
# a request would be wrapped by the instrumentation.
_PROBE = """
import django, json
django.setup()
import psycopg, redis
from config.tracing import tracing_setup
on = tracing_setup(role="probe")
from django.conf import settings
print(json.dumps({"on": on, "psycopg": hasattr(psycopg.connect, "__wrapped__"),
                  "redis": hasattr(redis.Redis.execute_command, "__wrapped__"),
                  "django": any("otel" in m for m in settings.MIDDLEWARE)}))
"""


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False),  # the default: no exporter, so no spans nobody would receive
    ({"ATRIUM_OTEL_EXPORTER": "console"}, True),
    ({"ATRIUM_OTEL_EXPORTER": "none", "ATRIUM_TRACING": "true"}, True),  # asked for: trace ids without export
    ({"ATRIUM_OTEL_EXPORTER": "console", "ATRIUM_TRACING": "false"}, False),
])
def test_requests_are_instrumented_only_when_spans_go_somewhere(env: dict[str, str], expected: bool) -> None:
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in {"ATRIUM_TRACING", "ATRIUM_OTEL_EXPORTER"}}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.test",
                                                               **env},
                         capture_output=True, text=True, check=True, timeout=120)
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state == {"on": expected, "psycopg": expected, "redis": expected, "django": expected}, out.stderr[-2000:]

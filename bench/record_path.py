"""CPU of a /v1 call's records, stage by stage, in one process: what the request thread does after the upstream
answer (describe the records, hash the payloads, encode the journal line) and what the batch writer does for a
batch (count the metrics, chain the audit rows, bind record_tx's first message). No network, no fsync: the
journal's write and the commit are the price of durability and are measured on a stand (docs/benchmarks.md).

The call is a real one: the bench tenant's API key, authenticated and admitted by gateway_admit (quota reserved in
Redis) for the body bench/overhead.py sends, with the simulator's answer. Best and median of ROUNDS rounds of N
calls, microseconds per call (per batch for the writer's stages). Final line: {"stage": us, ...} (best).

    .venv/bin/python bench/record_path.py [N] [ROUNDS]
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from _common import bench_database, bench_tenant, emit

BODY = {"model": "claude-sonnet-5-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Give me one short sentence about benchmarks."}]}
ANSWER = {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
          "content": [{"type": "text", "text": "Benchmarks time a system at a task."}],
          "stop_reason": "end_turn", "stop_sequence": None,
          "usage": {"input_tokens": 14, "output_tokens": 18, "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0}}


def _admitted() -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import RequestFactory
    from django_tenants.utils import tenant_context

    from access.services import api_key_create
    from inference.api_v1 import _auth_metadata, _authenticate
    from inference.gateway import Call, gateway_admit
    from tenants.models import Tenant

    tenant = bench_tenant("bench")
    Tenant.objects.filter(pk=tenant.pk).update(requests_per_minute=10_000_000, tokens_per_day=10_000_000_000,
                                               provider_order=["anthropic"], record_policy="serve_and_journal")
    tenant = Tenant.objects.get(pk=tenant.pk)
    with tenant_context(tenant):
        user = get_user_model().objects.create_user(username="bench")
        user.groups.add(Group.objects.get(name="power_user"))
        _row, key = api_key_create(user=user, name="bench")
    connection.set_tenant(tenant)
    request = RequestFactory().post("/v1/messages", data=json.dumps(BODY), content_type="application/json",
                                    HTTP_X_API_KEY=key, HTTP_ANTHROPIC_VERSION="2023-06-01",
                                    HTTP_USER_AGENT="python-httpx/0.28.1", REMOTE_ADDR="127.0.0.1")
    request.tenant = tenant  # type: ignore[attr-defined]
    user, info = _authenticate(request)
    call = Call(tenant=tenant, user=user, body=BODY, source="api", request=request, auth_method=info.method,
                auth_metadata=_auth_metadata(info))
    return tenant, gateway_admit(call)


def _timed(stages: dict[str, Callable[[], object]], n: int, rounds: int) -> dict[str, list[float]]:
    """Per round, each stage n times in turn (interleaved, so a slow spell of the machine falls on all)."""
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(rounds):
        for name, stage in stages.items():
            started = time.perf_counter_ns()
            for _ in range(n):
                stage()
            times[name].append((time.perf_counter_ns() - started) / n / 1000)
    return times


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    bench_database("atrium_bench_record_path")
    tenant, admitted = _admitted()
    import psycopg
    from django.db import connection

    from audit.rows import audit_rows_json
    from audit.services import tenant_key_of
    from inference.gateway import _call_record
    from inference.journal_lines import journal_line
    from inference.record_tx import _first, _text_array
    from inference.records import Counts, _hashed, record_encode, records_count
    from inference.types import Attempt

    attempts = [Attempt(target="anthropic", model_id="claude-sonnet-5-5", outcome="answered", status=200,
                        latency_ms=0.61)]

    def describe() -> Any:
        return _call_record(admitted, message=ANSWER, provider="anthropic", region="", model_id="claude-sonnet-5-5",
                            attempts=attempts, status="success")

    def request_thread() -> bytes:
        record = describe()
        record.audit = _hashed(record)
        return journal_line(1, record_encode(record))

    batch = [describe() for _ in range(20)]
    for record in batch:
        record.audit = _hashed(record)
        record.audit.request_id = record.request_id = f"req_{uuid.uuid4().hex}"
    events = [record.audit for record in batch]
    key = tenant_key_of(tenant)

    def count() -> None:
        for record in batch:
            record.counts = Counts("bench", "api", "success", 0.0025, 14, 18, ())
        records_count(batch)

    connection.ensure_connection()
    cursor = psycopg.ClientCursor(connection.connection)
    first = _first(connection.connection, tenant.schema_name, None).decode()
    ids = [record.request_id for record in batch]

    stages: dict[str, Callable[[], object]] = {
        "request: _call_record": describe,
        "request: records to journal line": request_thread,
        "writer: records_count of 20": count,
        "writer: audit_rows_json of 20": lambda: audit_rows_json(events, key=key, head=(1, "ab" * 32), present=set(),
                                                                erased=frozenset()),
        "writer: first message of 20": lambda: cursor.mogrify(first, [_text_array(ids), _text_array(["x" * 32])]),
    }
    times = _timed(stages, n, rounds)
    for name, values in times.items():
        values.sort()
        print(f"{name:36s} best {values[0]:8.2f} us  median {values[len(values) // 2]:8.2f} us")
    emit({name: round(values[0], 2) for name, values in times.items()})


if __name__ == "__main__":
    main()

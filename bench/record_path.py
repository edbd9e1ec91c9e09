"""CPU of a /v1 call's records, stage by stage, in one process: what the request thread does after the upstream
answer (describe the records, hash the payloads, encode the journal line) and what the batch writer does for a
batch (count the metrics, chain the audit rows, bind record_tx's first message). No network, no fsync: the
journal's write and the commit are the price of durability and are measured on a stand (docs/benchmarks.md).

The call is a real one: the bench tenant's API key, authenticated and admitted by gateway_admit (quota reserved in
Redis) for the body bench/overhead.py sends, with the simulator's answer. Best and median of ROUNDS rounds of N
calls, microseconds per call (per batch for the writer's stages). Final line: {"stage": us, ...} (best).

With BASE (a git revision), the record modules as they are at BASE (RECORD_MODULES) are loaded beside the working
tree's under other names, and the request thread's record (describe, hash, the journal line's bytes) and the
writer's audit rows of a batch run in both versions, interleaved round by round (the order alternating), CPU time
of this thread (time.thread_time_ns): min and median per version. The two versions' journal lines and audit rows
are checked to be the same bytes first (the random event ids made alike for the check).

    .venv/bin/python bench/record_path.py [N] [ROUNDS] [BASE]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable
from typing import Any

from _ab import alternating_cpu
from _common import ROOT, bench_database, bench_tenant, emit

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


# The modules of a call's record, in import order, and the names their BASE versions load under.
RECORD_MODULES = ["audit.verify", "audit.chain", "audit.rows", "audit.services", "inference.journal_lines",
                  "inference.records", "inference.gateway"]


def _old_name(module: str) -> str:
    return "old_" + module.replace(".", "_")


def load_base(base: str) -> dict[str, types.ModuleType]:
    """RECORD_MODULES as they are at git revision `base`, each importing the others' BASE versions."""
    loaded: dict[str, types.ModuleType] = {}
    for module in RECORD_MODULES:
        path = module.replace(".", "/") + ".py"
        source = subprocess.run(["git", "show", f"{base}:{path}"], capture_output=True, text=True, check=True,
                                cwd=ROOT).stdout
        for other in RECORD_MODULES:  # `from audit.chain import x`, `from audit import chain[, queries]`
            package, _, name = other.rpartition(".")
            alias = f"import {_old_name(other)} as {name}\n"
            source = source.replace(f"from {other} import", f"from {_old_name(other)} import")
            source = source.replace(f"from {package} import {name}, ", f"{alias}from {package} import ")
            source = source.replace(f"from {package} import {name}\n", alias)
        old = types.ModuleType(_old_name(module))
        old.__file__ = f"{base}:{path}"
        sys.modules[old.__name__] = old  # dataclasses look their module up
        exec(compile(source, old.__file__, "exec"), old.__dict__)  # noqa: S102  # the repository's own code
        loaded[module] = old
    return loaded


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


def ab(base: str, tenant: Any, admitted: Any, n: int, rounds: int) -> None:
    """BASE's record code against the working tree's, interleaved (see the module's docstring)."""
    from audit import rows
    from audit.services import tenant_key_of
    from inference import gateway, journal_lines, records
    from inference.journal_lines import journal_line
    from inference.types import Attempt

    old = load_base(base)
    attempts = [Attempt(target="anthropic", model_id="claude-sonnet-5-5", outcome="answered", status=200,
                        latency_ms=0.61)]
    key = tenant_key_of(tenant)

    def describe(module: Any) -> Any:
        return module._call_record(admitted, message=ANSWER, provider="anthropic", region="",
                                   model_id="claude-sonnet-5-5", attempts=attempts, status="success")

    def line(version: str) -> Callable[[], bytes]:
        """The request thread's record as each version makes it: describe (gateway._call_record), the payloads'
        hashes (record_submit: in place where the event can, else a hashed copy), the journal line's bytes
        (_journal_append: the codec's encode, then journal_line)."""
        module, records_module, lines = ((gateway, records, journal_lines) if version == "new" else
                                         (old["inference.gateway"], old["inference.records"],
                                          old["inference.journal_lines"]))
        encode = getattr(records_module, "record_line", None) or records_module.record_encode

        def made() -> bytes:
            record = describe(module)
            if hasattr(record.audit, "hash_payloads"):
                record.audit.hash_payloads(records_module.tenant_key_of(record.tenant))
            else:
                record.audit = records_module._hashed(record)
            return lines.journal_line(1, encode(record))
        return made

    def batch(version: str) -> list[Any]:
        module = gateway if version == "new" else old["inference.gateway"]
        made = []
        for _ in range(20):
            record = describe(module)
            record.audit = (records if version == "new" else old["inference.records"])._hashed(record)
            record.audit.request_id = record.request_id = f"req_{uuid.uuid4().hex}"
            (records if version == "new" else old["inference.records"]).record_encode(record)
            made.append(record)
        return made

    events = {version: [r.audit for r in batch(version)] for version in ("old", "new")}

    def chained(version: str) -> Callable[[], Any]:
        module = rows if version == "new" else old["audit.rows"]
        made = events[version]
        return lambda: module.audit_rows_json(made, key=key, head=(1, "ab" * 32), present=set(), erased=frozenset())

    # The same bytes: a journal line of one record encoded by both versions (hashed by each), and the audit rows
    # of one batch chained by both (event ids made alike).
    sample = describe(gateway)
    twin = describe(old["inference.gateway"])
    twin.audit.timestamp, twin.audit.latency_ms = sample.audit.timestamp, sample.audit.latency_ms
    twin.usage, twin.reservation = sample.usage, sample.reservation
    sample.audit.hash_payloads(key)
    new_line = journal_line(1, records.record_line(sample))
    twin.audit = old["inference.records"]._hashed(twin)
    old_line = old["inference.journal_lines"].journal_line(1, old["inference.records"].record_encode(twin))
    assert new_line == old_line, (new_line, old_line)
    for version in ("old", "new"):
        (rows if version == "new" else old["audit.rows"]).uuid4_text = lambda: "0" * 8 + "-0000-4000-8000-" + "0" * 12
    same = events["old"]
    assert rows.audit_rows_json(same, key=key, head=(1, "ab" * 32), present=set(), erased=frozenset()) == \
        old["audit.rows"].audit_rows_json(same, key=key, head=(1, "ab" * 32), present=set(), erased=frozenset())
    from config.ids import uuid4_text

    rows.uuid4_text = old["audit.rows"].uuid4_text = uuid4_text

    stages = {"request: record line": line, "writer: audit_rows_json of 20": chained}
    for stage, make in stages.items():
        calls = {version: make(version) for version in ("old", "new")}
        results = alternating_cpu(calls, rounds, n, warm=max(1, n // 10))
        for version, values in results.items():
            label = base if version == "old" else "working tree"
            print(f"{stage:32s} {label:14s} CPU us min {min(values):8.2f} median {statistics.median(values):8.2f}")
        emit({"stage": stage, **{f"{version}_median_us": round(statistics.median(values), 2)
                                 for version, values in results.items()}})


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    base = sys.argv[3] if len(sys.argv) > 3 else None
    bench_database("atrium_bench_record_path")
    tenant, admitted = _admitted()
    if base:
        ab(base, tenant, admitted, n, rounds)
        return
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

"""PostgreSQL's CPU and the writer thread's CPU per record for the record writer's commit (inference.record_tx),
in one process: batches of B real call records (the bench tenant's, as bench/record_path.py builds them) committed
by record_tx_commit on this process's connection; the backend's CPU read from /proc/<its pid>/schedstat (the server
is local) around each block of K batches, the thread's from time.thread_time_ns. Medians of ROUNDS blocks.

With BASE=<a baseline tree> (git worktree add --detach /work/base-x main), that tree's inference/record_tx.py runs
in the same process, its blocks interleaved with this tree's (an A/B on the same connection and tables).
PATH=one (default) commits in one message (this process knows the chain's head); PATH=two forgets the head before
each commit (the two-message path, as when another process wrote since).

    BASE=/work/base-x PATH_=one .venv/bin/python bench/writer_pg.py [B] [K] [ROUNDS]

Each variant's prepared statements get names of their own (one connection holds both). WRITER_PG_NEW_FIRST=1 runs
this tree's blocks first in each round (a variant first prepares on smaller tables); WRITER_PG_ROUNDS=1 prints each
block's figure (a plan gone bad shows as a rise, round after round); WRITER_PG_EXPLAIN=1 the scans of each variant's
one-message statement's cached plan; WRITER_PG_PLANS=1 pg_prepared_statements' generic and custom plan counts;
WRITER_PG_PLAN_MODE=<plan_cache_mode> sets that for the session; WRITER_PG_SQL=<statements> runs them in the bench
tenant's schema first (an experiment's schema change).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
import uuid
from typing import Any

from _common import bench_database, emit, module_from_file
from record_path import ANSWER, _admitted


def backend_cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:  # nanoseconds on a CPU
        return int(f.read().split()[0])


def main() -> None:
    b = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    two = os.environ.get("PATH_", "one") == "two"
    bench_database("atrium_bench_writer_pg")
    tenant, admitted = _admitted()
    from django.db import connection

    from inference import record_tx
    from inference.gateway import _call_record
    from inference.records import _hashed
    from inference.types import Attempt

    variants: dict[str, Any] = {"new": record_tx}
    if os.environ.get("BASE"):
        variants = {"base": module_from_file("record_tx_base", f"{os.environ['BASE']}/inference/record_tx.py"),
                    "new": record_tx}
    if os.environ.get("WRITER_PG_NEW_FIRST"):
        variants = dict(reversed(list(variants.items())))
    for name, module in variants.items():  # each variant's prepared statements under names of its own
        if hasattr(module, "_names"):
            module._names = lambda schema, names=module._names, suffix=name: {  # type: ignore[misc]
                kind: f"{value}_{suffix}" for kind, value in names(schema).items()}
    attempts = [Attempt(target="anthropic", model_id="claude-sonnet-5-5", outcome="answered", status=200,
                        latency_ms=0.61)]

    def batch() -> list[Any]:
        out = []
        for _ in range(b):
            record = _call_record(admitted, message=ANSWER, provider="anthropic", region="",
                                  model_id="claude-sonnet-5-5", attempts=attempts, status="success")
            record.audit = _hashed(record)
            record.audit.request_id = record.request_id = f"req_{uuid.uuid4().hex}"
            record.usage = dataclasses.replace(record.usage, request_id=record.request_id)
            out.append(record)
        return out

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        if os.environ.get("WRITER_PG_SQL"):  # an experiment's schema change (bench tenant's schema)
            cursor.execute(f"SET search_path = {tenant.schema_name}, public; " + os.environ["WRITER_PG_SQL"])
            cursor.execute("SET search_path = public")
        if os.environ.get("WRITER_PG_PLAN_MODE"):  # the session's plan_cache_mode
            cursor.execute(f"SET plan_cache_mode = {os.environ['WRITER_PG_PLAN_MODE']}")
    schema = tenant.schema_name
    head: Any = None
    for module in variants.values():  # warm: each prepares what it prepares, and knows the head
        module._heads.update({schema: head} if head else {})
        module.record_tx_commit(batch())
        head = module._heads[schema]
    pg: dict[str, list[float]] = {name: [] for name in variants}
    py: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, module in variants.items():
            batches = [batch() for _ in range(k)]
            module._heads[schema] = head
            module._cooling.clear()
            time.sleep(0.01)
            p0, spent = backend_cpu_ns(pid), 0
            for each in batches:
                if two:
                    module._heads.clear()
                    module._cooling.clear()
                t = time.thread_time_ns()
                module.record_tx_commit(each)
                spent += time.thread_time_ns() - t
            time.sleep(0.01)  # the backend's last commit accounted
            p1 = backend_cpu_ns(pid)
            if two:
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT seq, mac FROM {schema}.audit_auditentry ORDER BY seq DESC LIMIT 1")  # noqa: S608 - the bench schema
                    head = tuple(cursor.fetchone())
            else:
                head = module._heads[schema]
            pg[name].append((p1 - p0) / (k * b) / 1000)
            if os.environ.get("WRITER_PG_EXPLAIN") and len(pg[name]) in (1, 3):
                with connection.cursor() as cursor:
                    statement = module._names(schema)["one"]
                    cursor.execute(f"BEGIN; SET LOCAL search_path = {schema}, public")
                    cursor.execute(f"EXPLAIN EXECUTE {statement}(%s, %s, %s, %s, %s, %s)",
                                   [1, "x", "{x}", "{y}", "[]", "[]"])
                    print(name, len(pg[name]), " | ".join(row[0].strip() for row in cursor.fetchall()
                                                          if "Scan" in row[0] or "Sort" in row[0]))
                    cursor.execute("ROLLBACK")
            py[name].append(spent / (k * b) / 1000)
    if os.environ.get("WRITER_PG_ROUNDS"):
        for name in variants:
            print(name, " ".join(f"{v:.0f}" for v in pg[name]))
    if os.environ.get("WRITER_PG_PLANS"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY name")
            for row in cursor.fetchall():
                print(*row)
            for name, module in variants.items():
                statement = module._names(schema)["one"]
                cursor.execute(f"BEGIN; SET LOCAL search_path = {schema}, public")
                cursor.execute(f"EXPLAIN EXECUTE {statement}(%s, %s, %s, %s, %s, %s)",
                               [head[0], head[1], "{x}", "{y}", "[]", "[]"])
                print(name, "\n".join(row[0] for row in cursor.fetchall()))
                cursor.execute("ROLLBACK")
    result = {}
    for name in variants:
        print(f"{name:5s} {b} records a batch, path {'two' if two else 'one'}: PostgreSQL backend median "
              f"{statistics.median(pg[name]):.1f} us/record (min {min(pg[name]):.1f}); thread median "
              f"{statistics.median(py[name]):.1f} us/record (min {min(py[name]):.1f})")
        result[f"{name}_pg_us"] = round(statistics.median(pg[name]), 2)
        result[f"{name}_thread_us"] = round(statistics.median(py[name]), 2)
    emit(result)


if __name__ == "__main__":
    main()

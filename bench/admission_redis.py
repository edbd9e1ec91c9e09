"""What the admission and settlement scripts cost Redis itself: redis-server's CPU (/proc/<pid>/schedstat, so the
server must run on this machine, and best be private: every client's work counts) per admitted call, this tree's
scripts against a baseline tree's, in turn in the same process (blocks of calls, old and new alternating).

    redis-server --port 18838 --save '' &      # a private server
    ATRIUM_BENCH_REDIS=redis://127.0.0.1:18838/0 BATCH=32 .venv/bin/python bench/admission_redis.py BASELINE_TREE \
        [blocks] [calls_per_block] [plain|user|budget]

Each call is one admission (the composite of inference.admission: the quota and breaker parts, and with `budget`
the budget parts) and its share of one settlement script per BATCH calls (the recorder settles calls in batches:
~30-50 at c=32 on a stand, 1-2 at c=1). `user` adds per-user limits. Prints, per tree, the median over blocks of
Redis's CPU per call and of this process's (the Python that builds and sends the scripts, and the syscalls).
No Django database: the tenant and user are stand-ins with the limits the benchmarks' tenants have.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ["REDIS_URL"] = os.environ.get("ATRIUM_BENCH_REDIS", "redis://127.0.0.1:18838/0")
from _common import module_from_file

MODULES = ["config.wire", "config.redis", "config.admission", "access.quota_scripts", "access.quotas",
           "access.budgets", "inference.breaker"]


def main() -> None:
    import django

    django.setup()
    import redis

    baseline = sys.argv[1]
    blocks = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    per = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    variant = sys.argv[4] if len(sys.argv) > 4 else "plain"
    batch = int(os.environ.get("BATCH", "32"))
    new = {m: importlib.import_module(m) for m in MODULES}
    saved = {m: sys.modules[m] for m in MODULES}
    old: dict[str, Any] = {}
    try:
        for m in MODULES:
            old[m] = module_from_file(m, Path(baseline) / (m.replace(".", "/") + ".py"))
    finally:
        sys.modules.update(saved)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.flushdb()
    pid = int(client.info("server")["process_id"])

    def server_ns() -> int:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])

    per_user = variant == "user"
    tenant = SimpleNamespace(schema_name="bench", requests_per_minute=10_000_000, tokens_per_day=10**10,
                             effective_user_requests_per_minute=1_000_000 if per_user else None,
                             effective_user_tokens_per_day=10**10 if per_user else None)
    user = SimpleNamespace(pk=7)

    def calls(mods: dict[str, Any]) -> Any:
        q, b, br, adm = mods["access.quotas"], mods["access.budgets"], mods["inference.breaker"], \
            mods["config.admission"]
        admission = adm.composite("budget_check", "quota", "budget", "breakers")
        client.set(q.epoch_key("bench"), "e1")
        client.set(b.epoch_key("bench"), "b1")
        limits = [b.BudgetLimit(budget_id=1, key=b.spent_key("bench", 1, date(2026, 12, 1)), limit=10**15, label="x",
                                period="monthly", period_start="2026-12-01", resets_at="2027-01-01T00:00:00+00:00",
                                ttl=b.TTL_MONTHLY_S)]
        count = [0]

        def block(n: int) -> None:
            done: list[tuple[str, Any, Any]] = []
            for _ in range(n):
                plan = q.quota_plan(tenant=tenant, user=user, tokens=76)
                check = br.BreakerCheck(targets=[("anthropic", "anthropic")])
                if variant == "budget":
                    money = b.BudgetPlan(schema="bench", cost=1000, limits=limits)
                    answer = admission.run(b.BUDGET_CHECK.bind(money), q.QUOTA.bind(plan), b.BUDGET.bind(money),
                                           br.BREAKERS.bind(check))
                    held = answer[b.BUDGET].reservation
                else:
                    answer = admission.run(q.QUOTA.bind(plan), br.BREAKERS.bind(check))
                    held = None
                count[0] += 1
                done.append((f"req_{count[0]:032x}", answer[q.QUOTA], held))
                if len(done) == batch:
                    q.quota_settle_many([(rid, reservation, 56) for rid, reservation, _ in done])
                    if variant == "budget":
                        b.budget_settle_many([(rid, "20261207", money_held, 800) for rid, _, money_held in done])
                    done = []

        return block

    trees = {"old": calls(old), "new": calls(new)}
    for block in trees.values():
        block(500)
    server: dict[str, list[float]] = {name: [] for name in trees}
    here: dict[str, list[float]] = {name: [] for name in trees}
    for k in range(blocks):
        for name in (["old", "new"] if k % 2 == 0 else ["new", "old"]):
            s0, c0 = server_ns(), time.thread_time_ns()
            trees[name](per)
            here[name].append((time.thread_time_ns() - c0) / per / 1000)
            server[name].append((server_ns() - s0) / per / 1000)
    for name in trees:
        print(json.dumps({"code": name, "variant": variant, "batch": batch,
                          "redis_cpu_us_per_call": round(statistics.median(server[name]), 2),
                          "client_cpu_us_per_call": round(statistics.median(here[name]), 2)}), flush=True)


if __name__ == "__main__":
    main()

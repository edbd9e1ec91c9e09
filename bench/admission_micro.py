"""In-process microbenchmark of a /v1/messages call's admission: API-key authentication and gateway_admit (the
policy checks, the plans and the one Redis round trip), on real PostgreSQL and Redis, with the per-process caches
on (as production runs them). What one call costs in the request thread: CPU (thread_time_ns) and wall time
(perf_counter_ns), medians and means over N calls after a warm-up. Each reservation is given back after its call,
outside the timed part, so Redis holds the same state for every call.

    .venv/bin/python bench/admission_micro.py setup          # once: a private database (ATRIUM_BENCH_DB)
    .venv/bin/python bench/admission_micro.py run [N] [plain|budget|user_limits] [BASELINE_TREE]
    .venv/bin/python bench/admission_micro.py blocks BASELINE_TREE [BLOCKS] [N] [plain|budget|user_limits]

`blocks` times authentication and admission apart, each in BLOCKS blocks of N calls per version (bench/_ab.
alternating_cpu: the order swapped every block), CPU per call: median, min and max of the blocks.

`budget` adds a tenant budget (the budget parts run), `user_limits` per-user limits (four quota keys instead of
two). With BASELINE_TREE (another checkout, e.g. `git worktree add /tmp/base <commit>`), that tree's copies of the
admission's modules (MODULES) are loaded beside this tree's, in the same process, and the two are called in turn,
call by call (old, new, new, old...), so the machine's load falls on both alike. ATRIUM_BENCH_BUSY=1 runs a thread
of pure Python beside the calls (as a server's record writer or receivers would be): a call that gives up the GIL
for a syscall then waits to get it back.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("ATRIUM_TENANT_CACHE_S", "60")
os.environ.setdefault("ATRIUM_AUTH_CACHE_S", "60")
os.environ.setdefault("ATRIUM_PROVIDER_ORDER", "anthropic")
os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-bench")
from _common import SERVER, bench_database, bench_tenant, module_from_file

DB = os.environ.get("ATRIUM_BENCH_DB", "atrium_admit_micro")
STATE = Path(f"/tmp/{DB}.json")  # noqa: S108
BODY = {"model": "claude-sonnet-5-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Give me one short sentence about benchmarks."}]}


def setup() -> None:
    bench_database(DB)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import tenant_context

    from access.models import Budget
    from access.services import api_key_create
    from tenants.models import Tenant

    state = {}
    for slug, extra in (("bench", {}), ("benchb", {"budget": True}),
                        ("benchu", {"user_requests_per_minute": 1_000_000, "user_tokens_per_day": 10_000_000_000})):
        tenant = bench_tenant(slug)
        fields = {k: v for k, v in extra.items() if k != "budget"}
        Tenant.objects.filter(pk=tenant.pk).update(requests_per_minute=10_000_000, tokens_per_day=10_000_000_000,
                                                   provider_order=["anthropic"], **fields)
        with tenant_context(tenant):
            user = get_user_model().objects.create_user(username="bench")
            user.groups.add(Group.objects.get(name="power_user"))
            _row, raw = api_key_create(user=user, name="bench")
            if extra.get("budget"):
                Budget.objects.create(scope=Budget.Scope.TENANT, period="monthly", limit_micros=10**15)
        state[slug] = raw
    STATE.write_text(json.dumps(state))


# The modules of the admission path, in import order (a module is loaded after those it imports).
MODULES = ["config.wire", "config.redis", "config.admission", "access.services", "access.authentication",
           "access.quota_scripts",
           "access.quotas", "access.budgets", "inference.breaker", "inference.budgeting", "inference.admission"]


def baseline_modules(tree: str) -> dict[str, ModuleType]:
    """The baseline tree's copies of MODULES, each importing the others' baseline copies (sys.modules points at
    them while they load, then back at this tree's)."""
    saved = {name: sys.modules[name] for name in MODULES}
    loaded: dict[str, ModuleType] = {}
    try:
        for name in MODULES:
            loaded[name] = module_from_file(name, Path(tree) / (name.replace(".", "/") + ".py"))
    finally:
        sys.modules.update(saved)
    return loaded


def run(n: int, variant: str, baseline: str | None) -> None:
    import django

    os.environ["DATABASE_URL"] = f"{SERVER}/{DB}"
    django.setup()
    from django.db import connection
    from django.test import RequestFactory

    from access.authentication import authenticate_api_request
    from access.budgets import budget_release
    from access.quotas import quota_release
    from inference.admission import gateway_admit
    from inference.calls import Call
    from tenants.models import Tenant

    slug = {"budget": "benchb", "user_limits": "benchu"}.get(variant, "bench")
    raw = json.loads(STATE.read_text())[slug]
    tenant = Tenant.objects.get(schema_name=slug)
    connection.set_tenant(tenant)
    request = RequestFactory().post("/v1/messages", data=json.dumps(BODY), content_type="application/json",
                                    HTTP_HOST=f"{slug}.localhost", HTTP_X_API_KEY=raw)
    request.tenant = tenant  # type: ignore[attr-defined]

    impls: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "new": (authenticate_api_request, gateway_admit)}
    if baseline:
        old = baseline_modules(baseline)
        impls["old"] = (old["access.authentication"].authenticate_api_request,
                        old["inference.admission"].gateway_admit)

    def one(name: str) -> tuple[int, int, int, int]:
        authenticate, admit = impls[name]
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        user, info = authenticate(request)
        c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        call = Call(tenant=tenant, user=user, body=json.loads(request.body), source="api", request=request,
                    auth_method=info.method, auth_metadata={"api_key_prefix": info.api_key_prefix})
        c2, w2 = time.thread_time_ns(), time.perf_counter_ns()
        admitted = admit(call)
        c3, w3 = time.thread_time_ns(), time.perf_counter_ns()
        quota_release(admitted.reservation)
        budget_release(admitted.budget)
        return c1 - c0, w1 - w0, c3 - c2, w3 - w2

    names = list(impls)
    if os.environ.get("ATRIUM_BENCH_BUSY"):
        import threading

        def busy() -> None:
            total = 0
            while True:
                for i in range(1000):
                    total += i

        threading.Thread(target=busy, daemon=True).start()
    for i in range(max(500, n // 10)):  # warm-up: caches filled, the listener connected
        one(names[i % len(names)])
    time.sleep(0.5)
    rows: dict[str, list[tuple[int, int, int, int]]] = {name: [] for name in names}
    for i in range(n):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            rows[name].append(one(name))

    def figures(name: str, column: int) -> dict[str, float]:
        values = [r[column] / 1000 for r in rows[name]]
        return {"p50": round(statistics.median(values), 2), "mean": round(statistics.fmean(values), 2)}

    for name in names:
        print(json.dumps({"code": name, "variant": variant, "n": n, "auth_cpu_us": figures(name, 0),
                          "auth_wall_us": figures(name, 1), "admit_cpu_us": figures(name, 2),
                          "admit_wall_us": figures(name, 3)}), flush=True)


def blocks(baseline: str, rounds: int, n: int, variant: str) -> None:
    """Authentication, then admission, old against new in alternating blocks (bench/_ab.alternating_cpu)."""
    import django

    os.environ["DATABASE_URL"] = f"{SERVER}/{DB}"
    django.setup()
    from _ab import alternating_cpu
    from django.db import connection
    from django.test import RequestFactory

    from access.authentication import authenticate_api_request
    from access.budgets import budget_release
    from access.quotas import quota_release
    from inference.admission import gateway_admit
    from inference.calls import Call
    from tenants.models import Tenant

    slug = {"budget": "benchb", "user_limits": "benchu"}.get(variant, "bench")
    raw = json.loads(STATE.read_text())[slug]
    tenant = Tenant.objects.get(schema_name=slug)
    connection.set_tenant(tenant)
    request = RequestFactory().post("/v1/messages", data=json.dumps(BODY), content_type="application/json",
                                    HTTP_HOST=f"{slug}.localhost", HTTP_X_API_KEY=raw)
    request.tenant = tenant  # type: ignore[attr-defined]
    old = baseline_modules(baseline)
    authenticate = {"old": old["access.authentication"].authenticate_api_request, "new": authenticate_api_request}
    admit = {"old": old["inference.admission"].gateway_admit, "new": gateway_admit}
    user, info = authenticate_api_request(request)

    def admitted(name: str) -> Callable[[], None]:
        def call() -> None:
            done = admit[name](Call(tenant=tenant, user=user, body=dict(BODY), source="api", request=request,
                                    auth_method=info.method, auth_metadata={"api_key_prefix": info.api_key_prefix}))
            quota_release(done.reservation)
            budget_release(done.budget)
        return call

    for stage, calls in (("authentication", {name: functools.partial(authenticate[name], request)
                                             for name in ("old", "new")}),
                         ("admission (+ its release)", {name: admitted(name) for name in ("old", "new")})):
        results = alternating_cpu(calls, rounds, n, warm=max(50, n // 5))
        for name, values in results.items():
            print(json.dumps({"stage": stage, "code": name, "variant": variant, "blocks": rounds, "n": n,
                              "cpu_us_median": round(statistics.median(values), 2),
                              "cpu_us_min": round(min(values), 2), "cpu_us_max": round(max(values), 2)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["setup"]:
        setup()
    elif sys.argv[1:2] == ["blocks"]:
        blocks(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 15,
               int(sys.argv[4]) if len(sys.argv) > 4 else 2000, sys.argv[5] if len(sys.argv) > 5 else "plain")
    else:
        run(int(sys.argv[2]) if len(sys.argv) > 2 else 5000, sys.argv[3] if len(sys.argv) > 3 else "plain",
            sys.argv[4] if len(sys.argv) > 4 else None)

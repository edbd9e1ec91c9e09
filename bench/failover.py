"""Failover cost: extra latency of the first request after the primary starts failing, and of requests while
its breaker is open, against a healthy direct call. Medians over N requests (default 200) each.

Then, on fresh processes (FRESH, default 5, each a new Python process that starts as a web worker does: Django
set up and the provider clients warmed, inference.warm): the first failover of the process against the later ones
(target: <= 50 ms more), with the warm-up and, for comparison, without it (clients built on first use).
And the slow provider: the primary answers after 10 s, the time-to-first-byte budget is BUDGET_S (default 2): the
request is served by the next target in the budget plus the fallback's own time.

Starts the provider simulator itself and uses its own database (atrium_bench_failover on DATABASE_URL's server,
default the local PostgreSQL) for the model catalog, and Redis db 15 (REDIS_URL's server) for the breaker.
Final line: {"first_failover_extra_ms": …, "open_breaker_extra_ms": …, "fresh_first_failover_extra_ms": …,
"slow_provider_ms": …, …}. Targets: <= 50 ms, <= 2 ms, <= 50 ms, <= budget + fallback + 50 ms.

    .venv/bin/python bench/failover.py [N] [FRESH] [BUDGET_S]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from _common import bench_database

# The breaker's state lives in Redis: use a database of its own on REDIS_URL's server.
os.environ["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/15"
for name in list(os.environ):
    if name.startswith(("ANTHROPIC_", "AWS_", "GOOGLE_")) or name == "CLOUD_ML_REGION":
        del os.environ[name]


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(n: int, prepare: Callable[[], None], call: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(n):
        prepare()
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return samples


CREDS = {"mode": "keys", "access_key": "bench-placeholder-key-id", "secret_key": "bench-placeholder-secret"}
ASK = {"max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]}


def fresh_child(sim_url: str, warm: bool) -> None:
    """A new process, as a web worker starts: Django, then (with `warm`) inference.warm builds the clients of the
    platform's targets. Prints {"first_ms", "later_ms"}: its first failover (primary 503 -> secondary, whose
    client this process has not used) and the median of 20 later ones."""
    import django

    django.setup()
    from django.conf import settings

    from inference import breaker
    from inference.router import route
    from inference.targets import parse_target
    from inference.types import MessageRequest
    from inference.warm import clients_warm

    settings.ATRIUM_BEDROCK_BASE_URL = f"{sim_url}/bedrock/{{region}}"
    settings.ATRIUM_BREAKER_COOLDOWN_S = 3600.0
    primary = parse_target("bedrock:us-east-1", CREDS)
    secondary = parse_target("bedrock:us-west-2", CREDS)
    request = MessageRequest(model="haiku", params=ASK)
    if warm:
        clients_warm([primary, secondary])

    def failover() -> float:
        breaker.breaker_reset()
        fault = json.dumps({"provider": "bedrock", "region": "us-east-1", "status": 503, "count": 1}).encode()
        urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - the simulator on loopback
            f"{sim_url}/_sim/faults", data=fault, method="POST")).read()
        t0 = time.perf_counter()
        result = route(request, [primary, secondary])
        elapsed = time.perf_counter() - t0
        assert result.region == "us-west-2", result
        return elapsed

    first = failover()
    later = [failover() for _ in range(20)]
    print(json.dumps({"first_ms": first * 1000, "later_ms": median_ms(later)}), flush=True)


def fresh_runs(sim_url: str, runs: int, warm: bool) -> list[float]:
    """(first - later) of `runs` fresh processes, in ms."""
    env = dict(os.environ, ATRIUM_WARM_CLIENTS="true" if warm else "false")
    extras = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--fresh-child", sim_url,
                              "warm" if warm else "cold"], env=env, capture_output=True, text=True, check=True)
        data = json.loads(out.stdout.strip().splitlines()[-1])
        extras.append(data["first_ms"] - data["later_ms"])
    return extras


def slow_provider(request: object, budget_s: float, sim: object) -> tuple[list[float], list[float]]:
    """The primary (Anthropic) answers after 10 s; (served-by-fallback latencies, fallback-alone latencies)."""
    from django.conf import settings

    from inference import breaker
    from inference.router import route
    from inference.targets import parse_target

    settings.ATRIUM_FIRST_BYTE_TIMEOUTS = {"anthropic": budget_s}
    anthropic_target = parse_target("anthropic", {"api_key": "sk-ant-bench-placeholder"})
    fallback = parse_target("bedrock:us-west-2", CREDS)
    alone = [0.0] * 5
    for i in range(len(alone)):
        t0 = time.perf_counter()
        route(request, [fallback])  # type: ignore[arg-type]
        alone[i] = time.perf_counter() - t0
    sim.faults.set("anthropic", latency_ms=10_000)  # type: ignore[attr-defined]
    served = []
    for _ in range(3):  # three slow attempts open the breaker: the fourth would skip without waiting
        breaker.breaker_reset()
        t0 = time.perf_counter()
        result = route(request, [anthropic_target, fallback])  # type: ignore[arg-type]
        served.append(time.perf_counter() - t0)
        assert result.provider == "bedrock", result
    sim.faults.clear()  # type: ignore[attr-defined]
    breaker.breaker_reset()
    return served, alone


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--fresh-child":
        os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/atrium_bench_failover"
        fresh_child(sys.argv[2], sys.argv[3] == "warm")
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    fresh = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    budget_s = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    bench_database("atrium_bench_failover")
    from django.conf import settings

    from inference import breaker
    from inference.router import route
    from inference.simulator import Simulator
    from inference.targets import parse_target
    from inference.types import MessageRequest

    creds = {"mode": "keys", "access_key": "bench-placeholder-key-id", "secret_key": "bench-placeholder-secret"}
    primary = parse_target("bedrock:us-east-1", creds)
    secondary = parse_target("bedrock:us-west-2", creds)
    request = MessageRequest(model="haiku", params={"max_tokens": 16,
                                                    "messages": [{"role": "user", "content": "ping"}]})
    with Simulator() as sim:
        settings.ATRIUM_BEDROCK_BASE_URL = f"{sim.url}/bedrock/{{region}}"
        settings.ATRIUM_BREAKER_FAILURES = 3
        settings.ATRIUM_BREAKER_COOLDOWN_S = 3600.0
        breaker.breaker_reset()

        def clean() -> None:
            breaker.breaker_reset()

        def primary_starts_failing() -> None:
            breaker.breaker_reset()
            sim.faults.clear()
            sim.faults.set("bedrock", "us-east-1", status=503, count=1)

        def breaker_open() -> None:
            breaker.breaker_record_failure(primary.breaker_name, reason="bench", force_open=True)

        for _ in range(20):  # warm up connections and caches
            route(request, [secondary])
        healthy = timed(n, clean, lambda: route(request, [secondary]))
        first = timed(n, primary_starts_failing, lambda: route(request, [primary, secondary]))
        sim.faults.clear()
        sim.reset_requests()
        opened = timed(n, breaker_open, lambda: route(request, [primary, secondary]))
        calls_to_open_target = len(sim.requests(provider="bedrock", region="us-east-1"))
        breaker.breaker_reset()
        sim.faults.clear()
        warm_extra = fresh_runs(sim.url, fresh, warm=True)
        cold_extra = fresh_runs(sim.url, fresh, warm=False)
        settings.ATRIUM_ANTHROPIC_BASE_URL = f"{sim.url}/anthropic"
        served, alone = slow_provider(request, budget_s, sim)

    base = median_ms(healthy)
    first_extra = median_ms(first) - base
    open_extra = median_ms(opened) - base
    print(f"healthy direct call        median {base:7.2f} ms  p99 {sorted(healthy)[int(n * .99) - 1] * 1000:7.2f} ms")
    print(f"first failover (503 -> 2nd) median {median_ms(first):7.2f} ms  extra {first_extra:6.2f} ms (target <= 50)")
    print(f"breaker open (skip -> 2nd)  median {median_ms(opened):7.2f} ms  extra {open_extra:6.2f} ms (target <= 2)")
    print(f"requests the open target received while open: {calls_to_open_target} (must be 0)")
    fresh_extra = statistics.median(warm_extra)
    print(f"fresh process, warm clients: first failover extra over later ones, median of {fresh} processes "
          f"{fresh_extra:7.2f} ms (each: {', '.join(f'{x:.1f}' for x in warm_extra)}) (target <= 50)")
    print(f"fresh process, clients built on first use (ATRIUM_WARM_CLIENTS=false), for comparison "
          f"{statistics.median(cold_extra):7.2f} ms (each: {', '.join(f'{x:.1f}' for x in cold_extra)})")
    slow_ms, alone_ms = median_ms(served), median_ms(alone)
    slow_extra = slow_ms - budget_s * 1000 - alone_ms
    print(f"slow provider (answers after 10 s, budget {budget_s:g} s): served by the fallback in median "
          f"{slow_ms:8.2f} ms (each: {', '.join(f'{x * 1000:.1f}' for x in served)}); the fallback alone "
          f"{alone_ms:.2f} ms; beyond budget + fallback {slow_extra:6.2f} ms (target <= 50)")
    print(json.dumps({"first_failover_extra_ms": round(first_extra, 2), "open_breaker_extra_ms": round(open_extra, 2),
                      "fresh_first_failover_extra_ms": round(fresh_extra, 2),
                      "fresh_first_failover_extra_cold_ms": round(statistics.median(cold_extra), 2),
                      "slow_provider_ms": round(slow_ms, 1), "slow_provider_budget_ms": budget_s * 1000,
                      "slow_provider_fallback_ms": round(alone_ms, 2),
                      "slow_provider_beyond_budget_and_fallback_ms": round(slow_extra, 2)}))


if __name__ == "__main__":
    main()

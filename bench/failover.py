"""Failover cost: extra latency of the first request after the primary starts failing, and of requests while
its breaker is open, against a healthy direct call. Medians over N requests (default 200) each.

Starts the provider simulator itself and uses its own database (atrium_bench_failover on DATABASE_URL's server,
default the local PostgreSQL) for the model catalog, and Redis db 15 (REDIS_URL's server) for the breaker.
Final line: {"first_failover_extra_ms": …, "open_breaker_extra_ms": …}. Targets: <= 50 ms and <= 2 ms.

    .venv/bin/python bench/failover.py [N]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable

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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
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
            breaker.breaker_record_failure(primary.key, reason="bench", force_open=True)

        for _ in range(20):  # warm up connections and caches
            route(request, [secondary])
        healthy = timed(n, clean, lambda: route(request, [secondary]))
        first = timed(n, primary_starts_failing, lambda: route(request, [primary, secondary]))
        sim.faults.clear()
        sim.reset_requests()
        opened = timed(n, breaker_open, lambda: route(request, [primary, secondary]))
        calls_to_open_target = len(sim.requests(provider="bedrock", region="us-east-1"))
        breaker.breaker_reset()

    base = median_ms(healthy)
    first_extra = median_ms(first) - base
    open_extra = median_ms(opened) - base
    print(f"healthy direct call        median {base:7.2f} ms  p99 {sorted(healthy)[int(n * .99) - 1] * 1000:7.2f} ms")
    print(f"first failover (503 -> 2nd) median {median_ms(first):7.2f} ms  extra {first_extra:6.2f} ms (target <= 50)")
    print(f"breaker open (skip -> 2nd)  median {median_ms(opened):7.2f} ms  extra {open_extra:6.2f} ms (target <= 2)")
    print(f"requests the open target received while open: {calls_to_open_target} (must be 0)")
    print(json.dumps({"first_failover_extra_ms": round(first_extra, 2), "open_breaker_extra_ms": round(open_extra, 2)}))


if __name__ == "__main__":
    main()

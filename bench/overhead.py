"""Gateway overhead: the same requests straight to the provider simulator, through Atrium, and through the
LiteLLM proxy in front of the same simulator, side by side in one run.

Starts the simulator (its own process), Atrium under gunicorn (2 workers x 16 threads) on a private database,
and LiteLLM (`litellm[proxy]` in .venv-litellm, created on first run) itself.
  - concurrency 1: p50/p99 over REQUESTS requests (default 1000) to each, non-streaming, the targets taking
    turns in blocks of 50 with a 0.2 s pause after each (so the shared machine's noise falls on all alike, and
    no gateway's after-call work lands on another's timings); time to first token streaming
  - concurrency 32: requests per second, non-streaming, 10 s per target
Final line: {"overhead_p50_ms", "overhead_p99_ms", "rps_c32", "litellm_overhead_p50_ms", "litellm_rps_c32", ...}.
Targets: overhead p50 <= 2 ms, p99 <= 10 ms, rps_c32 above LiteLLM's.

    .venv/bin/python bench/overhead.py [REQUESTS]      (ATRIUM_BENCH_SKIP_LITELLM=1 to skip LiteLLM;
    ATRIUM_BENCH_BASELINE=<another checkout> also times that code, e.g. the commit before a change, in the same run)
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from _common import ROOT, bench_database, bench_tenant, emit

LITELLM_VENV = ROOT / ".venv-litellm"
LITELLM_SPEC = "litellm[proxy]==1.108.7"
BODY = {"model": "claude-sonnet-5-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Give me one short sentence about benchmarks."}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 120,
              headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early (code {proc.returncode})")
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} did not answer {url}")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class Target:
    def __init__(self, name: str, url: str, headers: dict[str, str]) -> None:
        self.name, self.url, self.headers = name, url, headers
        self.client = httpx.Client(timeout=30, headers=headers, limits=httpx.Limits(max_connections=64))

    def call(self, client: httpx.Client | None = None) -> float:
        started = time.perf_counter()
        response = (client or self.client).post(self.url, json=BODY)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{self.name}: HTTP {response.status_code} {response.text[:300]}")
        return elapsed

    def ttft(self) -> float:
        started = time.perf_counter()
        with self.client.stream("POST", self.url, json={**BODY, "stream": True}) as response:
            if response.status_code != 200:
                raise SystemExit(f"{self.name} stream: HTTP {response.status_code}")
            lines = response.iter_lines()
            for line in lines:
                if "content_block_delta" in line:
                    first = (time.perf_counter() - started) * 1000
                    for _ in lines:
                        pass
                    return first
        raise SystemExit(f"{self.name}: stream had no content_block_delta")


def interleaved(fns: dict[str, Callable[[], float]], count: int, block: int = 50,
                pause: float = 0.2) -> dict[str, list[float]]:
    """`count` timings of each function, taken in blocks of `block` back-to-back calls, the targets taking turns
    (the order rotating every round): the shared machine's slow and fast spells fall on every target alike, while
    each target still sees back-to-back requests, as under load. A short pause after each block lets a gateway
    finish its own after-call work (logging, records) before the next target is timed on the same two cores."""
    for fn in fns.values():
        for _ in range(min(50, count)):
            fn()  # warm-up: connections, caches, imports
    names = list(fns)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range((count + block - 1) // block):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            size = min(block, count - round_ * block)
            timings[name].extend(fns[name]() for _ in range(size))
            time.sleep(pause)
    return timings


def throughput(target: Target, concurrency: int, seconds: float) -> float:
    deadline = time.monotonic() + seconds
    done = [0] * concurrency

    def worker(index: int) -> None:
        with httpx.Client(timeout=30, headers=target.headers) as client:  # one connection per simulated user
            while time.monotonic() < deadline:
                target.call(client)
                done[index] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return sum(done) / (time.monotonic() - started)


def litellm_start(sim_url: str) -> tuple[subprocess.Popen[bytes], str, str] | None:
    if os.environ.get("ATRIUM_BENCH_SKIP_LITELLM"):
        return None
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"creating {LITELLM_VENV} with {LITELLM_SPEC} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", LITELLM_SPEC], check=True)
    port = free_port()
    config = ROOT / "var" / "bench-litellm.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(json.dumps({"model_list": [{"model_name": "claude-sonnet-5-5", "litellm_params": {
        "model": "anthropic/claude-sonnet-5-5", "api_base": f"{sim_url}/anthropic", "api_key": "sk-ant-bench"}}],
        "litellm_settings": {"telemetry": False, "drop_params": True}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "DATABASE_URL"))}
    master_key = f"sk-{uuid.uuid4().hex}{uuid.uuid4().hex}"  # LiteLLM refuses to start unauthenticated
    env.update(LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=master_key)
    log = (ROOT / "var" / "bench-litellm.log").open("wb")
    proc = subprocess.Popen([str(binary), "--config", str(config), "--port", str(port), "--num_workers", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, "LiteLLM", timeout=180)
    return proc, f"http://127.0.0.1:{port}/v1/messages", master_key


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    url = bench_database("atrium_bench_overhead")
    tenant = bench_tenant("bench")
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import tenant_context

    from access.services import api_key_create
    from tenants.models import Tenant

    Tenant.objects.filter(pk=tenant.pk).update(requests_per_minute=10_000_000, tokens_per_day=10_000_000_000,
                                               provider_order=["anthropic"])
    with tenant_context(tenant):
        user = get_user_model().objects.create_user(username="bench")
        user.groups.add(Group.objects.get(name="power_user"))
        _row, key = api_key_create(user=user, name="bench")

    procs: list[subprocess.Popen[bytes]] = []
    sim_port, web_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    (ROOT / "var").mkdir(exist_ok=True)
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "inference.simulator", "--port", str(sim_port)], cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(f"{sim_url}/healthz", procs[-1], "simulator")
        # Production settings (persistent connections and all), with this run's throwaway secrets.
        env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings.production",
                   DJANGO_SECRET_KEY=settings.SECRET_KEY,
                   ATRIUM_ENCRYPTION_KEYS=",".join(settings.ATRIUM_ENCRYPTION_KEYS),
                   ATRIUM_PLATFORM_AUDIT_KEY=secrets.token_urlsafe(32),
                   ATRIUM_AUDIT_CHECKPOINT_KEY=secrets.token_urlsafe(32),
                   ATRIUM_RECORD_JOURNAL_DIR=str(ROOT / "var" / "bench-journal"),
                   REDIS_URL=settings.REDIS_URL, ATRIUM_ANTHROPIC_BASE_URL=f"{sim_url}/anthropic",
                   ANTHROPIC_API_KEY="sk-ant-bench", ATRIUM_PROVIDER_ORDER="anthropic", ATRIUM_LOG_LEVEL="WARNING")
        log = (ROOT / "var" / "bench-overhead-web.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py", "--bind",
             f"127.0.0.1:{web_port}", "--workers", "2", "--threads", "16", "--access-logfile", "/dev/null"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        host = {"Host": "bench.localhost"}
        wait_http(f"http://127.0.0.1:{web_port}/healthz", procs[-1], "gunicorn", headers={"Host": "localhost"})
        targets = {
            "direct": Target("direct", f"{sim_url}/anthropic/v1/messages",
                             {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}),
            "atrium": Target("atrium", f"http://127.0.0.1:{web_port}/v1/messages", {**host, "x-api-key": key}),
        }
        baseline = os.environ.get("ATRIUM_BENCH_BASELINE")  # another source tree of Atrium, timed in the same run
        if baseline:
            base_port = free_port()
            base_log = (ROOT / "var" / "bench-overhead-baseline.log").open("wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py", "--bind",
                 f"127.0.0.1:{base_port}", "--workers", "2", "--threads", "16", "--access-logfile", "/dev/null"],
                cwd=baseline, env=env, stdout=base_log, stderr=subprocess.STDOUT))
            wait_http(f"http://127.0.0.1:{base_port}/healthz", procs[-1], "baseline gunicorn",
                      headers={"Host": "localhost"})
            targets["baseline"] = Target("baseline", f"http://127.0.0.1:{base_port}/v1/messages",
                                         {**host, "x-api-key": key})
        litellm = litellm_start(sim_url)
        if litellm is not None:
            procs.append(litellm[0])
            targets["litellm"] = Target("litellm", litellm[1], {"anthropic-version": "2023-06-01",
                                                                "Authorization": f"Bearer {litellm[2]}"})

        calls = interleaved({name: target.call for name, target in targets.items()}, count)
        ttfts = interleaved({name: target.ttft for name, target in targets.items()}, max(100, count // 5))
        results: dict[str, dict[str, float]] = {}
        for name, target in targets.items():
            rps = throughput(target, 32, 10.0)
            values, ttft = calls[name], ttfts[name]
            results[name] = {"p50": statistics.median(values), "p99": percentile(values, 99),
                             "ttft_p50": statistics.median(ttft), "rps_c32": rps}
            print(f"{name:8s} c1 p50 {results[name]['p50']:7.2f} ms  p99 {results[name]['p99']:7.2f} ms  "
                  f"stream TTFT p50 {results[name]['ttft_p50']:7.2f} ms  c32 {rps:8.1f} req/s", flush=True)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    direct, atrium = results["direct"], results["atrium"]
    out: dict[str, Any] = {
        "overhead_p50_ms": round(atrium["p50"] - direct["p50"], 2),
        "overhead_p99_ms": round(atrium["p99"] - direct["p99"], 2),
        "rps_c32": round(atrium["rps_c32"], 1),
        "ttft_overhead_p50_ms": round(atrium["ttft_p50"] - direct["ttft_p50"], 2),
        "direct_rps_c32": round(direct["rps_c32"], 1),
    }
    if "baseline" in results:
        out["baseline_overhead_p50_ms"] = round(results["baseline"]["p50"] - direct["p50"], 2)
        out["baseline_overhead_p99_ms"] = round(results["baseline"]["p99"] - direct["p99"], 2)
        out["baseline_rps_c32"] = round(results["baseline"]["rps_c32"], 1)
        out["baseline_ttft_overhead_p50_ms"] = round(results["baseline"]["ttft_p50"] - direct["ttft_p50"], 2)
    if "litellm" in results:
        out["litellm_overhead_p50_ms"] = round(results["litellm"]["p50"] - direct["p50"], 2)
        out["litellm_rps_c32"] = round(results["litellm"]["rps_c32"], 1)
    emit(out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

"""Gateway overhead and throughput: the same requests straight to the provider simulator, through Atrium, through
the Portkey gateway and through the LiteLLM proxy in front of the same simulator, side by side in one run.

Starts the simulator (its own process), Atrium (production settings, full policy: tenant, API key, permission,
quota, durable audit records; 2 workers x 16 threads) on a private database, the Portkey gateway
(`@portkey-ai/gateway`, pinned, npm-installed into var/bench-portkey on first run; one node process, no auth, quota
or audit work) and LiteLLM (`litellm[proxy]`, pinned, in .venv-litellm, created on first run; 1 worker, see
litellm_start).
  - concurrency 1: p50/p99 over REQUESTS requests (default 1000) to each, non-streaming, the targets taking
    turns in blocks of 50 with a 0.2 s pause after each (so the shared machine's noise falls on all alike, and
    no gateway's after-call work lands on another's timings); time to first token, streaming, the same way
  - concurrency 32: wrk (Debian's package, installed if missing) -t2 -c32 for 10 s per target: requests per
    second (2xx answers only), p50/p99/max latency, the requests over 1 s and 2 s, and errors (non-2xx answers, socket
    errors); non-streaming, and streaming read to the last byte
  - memory: the proportional set size (PSS) of each gateway's serving processes after the load
Atrium is timed for two tenants on the same server: `atrium`, a serve_and_journal tenant (its record fsynced to
the web host's journal before the answer, committed to PostgreSQL right after), and `atrium_db`, a fail_closed
tenant (its record committed to PostgreSQL before the answer); both durable before the response completes.
Final line: every figure of issue 18's target, each gateway's, and `targets` (which are met; `targets_db` for
atrium_db):
  rps_c32 >= portkey's (non-streaming and streaming), no request over 1 s at c=32, c32 p99 <= portkey's,
  overhead p50 (c=1) <= 0.75 x portkey's, time-to-first-token overhead <= portkey's non-streaming overhead.
The Portkey gateway 1.15.2 fails every streamed /v1/messages call on Node 20 ("TypeError: immutable" when it adds
its headers to the upstream response): its streaming figures are null and the streaming targets compare with its
non-streaming ones.

    .venv/bin/python bench/overhead.py [REQUESTS]
  ATRIUM_BENCH_SKIP_LITELLM=1 / ATRIUM_BENCH_SKIP_PORTKEY=1 skip those; ATRIUM_BENCH_SERVERS=serve,gunicorn
  times Atrium under each listed server (`serve`: python -m config.serve, what production runs, the default;
  `gunicorn`: config/gunicorn.py; `granian`: granian's bare command line; the first is the one the targets
  use); ATRIUM_BENCH_BASELINE=<another
  checkout> also times that code, e.g. the commit before a change, in the same run; ATRIUM_BENCH_SECONDS (10).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _common import ROOT, bench_database, bench_tenant, emit
from _load import pss_mb, wrk, wrk_ensure

LITELLM_VENV = ROOT / ".venv-litellm"
LITELLM_SPEC = "litellm[proxy]==1.108.7"
PORTKEY_DIR = ROOT / "var" / "bench-portkey"
PORTKEY_SPEC = "@portkey-ai/gateway@1.15.2"
BODY = {"model": "claude-sonnet-5-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Give me one short sentence about benchmarks."}]}
WORKERS, THREADS = 2, 16

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
    def __init__(self, name: str, url: str, headers: dict[str, str], procs: list[subprocess.Popen[bytes]],
                 streams: bool = True) -> None:
        self.name, self.url, self.headers, self.procs, self.streams = name, url, headers, procs, streams
        self.body = BODY
        self.client = httpx.Client(timeout=30, headers=headers, limits=httpx.Limits(max_connections=64))

    def call(self) -> float:
        started = time.perf_counter()
        response = self.client.post(self.url, json=BODY)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{self.name}: HTTP {response.status_code} {response.text[:300]}")
        return elapsed

    def ttft(self) -> float:
        started = time.perf_counter()
        with self.client.stream("POST", self.url, json={**BODY, "stream": True}) as response:
            if response.status_code != 200:
                raise SystemExit(f"{self.name} stream: HTTP {response.status_code} {response.read()[:300]!r}")
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
    config.write_text(json.dumps({"model_list": [{"model_name": "claude-sonnet-5-5", "litellm_params": {
        "model": "anthropic/claude-sonnet-5-5", "api_base": f"{sim_url}/anthropic", "api_key": "sk-ant-bench"}}],
        "litellm_settings": {"telemetry": False, "drop_params": True}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "DATABASE_URL"))}
    master_key = f"sk-{uuid.uuid4().hex}{uuid.uuid4().hex}"  # LiteLLM refuses to start unauthenticated
    env.update(LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=master_key)
    log = (ROOT / "var" / "bench-litellm.log").open("wb")
    # One worker: with --num_workers 2, LiteLLM 1.108.7's spawned workers exit and are respawned in a loop here
    # (it never answers); ATRIUM_BENCH_LITELLM_WORKERS to try another count.
    workers = os.environ.get("ATRIUM_BENCH_LITELLM_WORKERS", "1")
    proc = subprocess.Popen([str(binary), "--config", str(config), "--port", str(port), "--num_workers", workers],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, "LiteLLM", timeout=600)
    except SystemExit as exc:  # measured without it rather than not at all (var/bench-litellm.log says why)
        print(f"LiteLLM left out of this run: {exc}", flush=True)
        if proc.poll() is None:
            proc.kill()
        return None
    return proc, f"http://127.0.0.1:{port}/v1/messages", master_key


def portkey_start() -> tuple[subprocess.Popen[bytes], str] | None:
    if os.environ.get("ATRIUM_BENCH_SKIP_PORTKEY"):
        return None
    entry = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not entry.exists():
        print(f"installing {PORTKEY_SPEC} into {PORTKEY_DIR} (first run only)", flush=True)
        PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
        (PORTKEY_DIR / "package.json").write_text('{"private": true}\n')
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--save-exact", PORTKEY_SPEC],
                       cwd=PORTKEY_DIR, check=True)
    port = free_port()
    log = (ROOT / "var" / "bench-portkey.log").open("wb")
    proc = subprocess.Popen(["node", str(entry), f"--port={port}"], cwd=PORTKEY_DIR, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/", proc, "Portkey gateway")
    return proc, f"http://127.0.0.1:{port}/v1/messages"


def atrium_start(server: str, cwd: Path | str, port: int, env: dict[str, str],
                 log_name: str) -> subprocess.Popen[bytes]:
    log = (ROOT / "var" / log_name).open("wb")
    if server == "serve" and not (Path(cwd) / "config" / "serve.py").exists():
        server = "gunicorn"  # an older tree (ATRIUM_BENCH_BASELINE) ran under gunicorn
    if server == "serve":  # what production runs (config/serve.py: granian), its access log on, to the log file
        command = [sys.executable, "-m", "config.serve", "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS),
                   "--threads", str(THREADS)]
    elif server == "granian":  # granian's own command line, without config.serve's hooks
        command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port",
                   str(port), "--workers", str(WORKERS), "--blocking-threads", str(THREADS), "--no-access-log",
                   "config.wsgi:application"]
    else:
        command = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py", "--bind",
                   f"127.0.0.1:{port}", "--workers", str(WORKERS), "--threads", str(THREADS),
                   "--access-logfile", "/dev/null"]
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, f"Atrium ({server})", headers={"Host": "localhost"})
    return proc


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seconds = float(os.environ.get("ATRIUM_BENCH_SECONDS", "10"))
    servers = [s.strip() for s in os.environ.get("ATRIUM_BENCH_SERVERS", "serve").split(",") if s.strip()]
    wrk_ensure()
    url = bench_database("atrium_bench_overhead")
    tenant = bench_tenant("bench")
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import tenant_context

    from access.services import api_key_create
    from tenants.models import Tenant

    # Two tenants, one per durability point (docs/decisions.md): "bench" serves and journals (the record is
    # fsynced to the web host's journal before the answer, committed right after), "benchdb" fails closed (the
    # record is committed to PostgreSQL before the answer). Both are timed in the same run.
    keys: dict[str, str] = {}
    for each, policy in ((tenant, "serve_and_journal"), (bench_tenant("benchdb"), "fail_closed")):
        Tenant.objects.filter(pk=each.pk).update(requests_per_minute=10_000_000, tokens_per_day=10_000_000_000,
                                                 provider_order=["anthropic"], record_policy=policy)
        with tenant_context(each):
            user = get_user_model().objects.create_user(username="bench")
            user.groups.add(Group.objects.get(name="power_user"))
            _row, keys[each.schema_name] = api_key_create(user=user, name="bench")
    key = keys["bench"]

    all_procs: list[subprocess.Popen[bytes]] = []
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    (ROOT / "var").mkdir(exist_ok=True)
    try:
        sim = subprocess.Popen([sys.executable, "-m", "inference.simulator", "--port", str(sim_port)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        all_procs.append(sim)
        wait_http(f"{sim_url}/healthz", sim, "simulator")
        # Production settings (persistent connections and all), with this run's throwaway secrets.
        env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings.production",
                   DJANGO_SECRET_KEY=settings.SECRET_KEY,
                   ATRIUM_ENCRYPTION_KEYS=",".join(settings.ATRIUM_ENCRYPTION_KEYS),
                   ATRIUM_PLATFORM_AUDIT_KEY=secrets.token_urlsafe(32),
                   ATRIUM_AUDIT_CHECKPOINT_KEY=secrets.token_urlsafe(32),
                   ATRIUM_RECORD_JOURNAL_DIR=str(ROOT / "var" / "bench-journal"),
                   PROMETHEUS_MULTIPROC_DIR=str(ROOT / "var" / "bench-prometheus"),
                   REDIS_URL=settings.REDIS_URL, ATRIUM_ANTHROPIC_BASE_URL=f"{sim_url}/anthropic",
                   ANTHROPIC_API_KEY="sk-ant-bench", ATRIUM_PROVIDER_ORDER="anthropic", ATRIUM_LOG_LEVEL="WARNING")
        shutil.rmtree(ROOT / "var" / "bench-prometheus", ignore_errors=True)
        (ROOT / "var" / "bench-prometheus").mkdir()
        atrium_headers = {"Host": "bench.localhost", "x-api-key": key, "anthropic-version": "2023-06-01"}
        targets = {"direct": Target("direct", f"{sim_url}/anthropic/v1/messages",
                                    {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}, [sim])}
        for index, server in enumerate(servers):
            name = "atrium" if index == 0 else f"atrium_{server}"
            port = free_port()
            proc = atrium_start(server, ROOT, port, env, f"bench-overhead-{name}.log")
            all_procs.append(proc)
            targets[name] = Target(name, f"http://127.0.0.1:{port}/v1/messages", atrium_headers, [proc])
            if index == 0:
                targets["atrium_db"] = Target("atrium_db", f"http://127.0.0.1:{port}/v1/messages", {
                    **atrium_headers, "Host": "benchdb.localhost", "x-api-key": keys["benchdb"]}, [proc])
        baseline = os.environ.get("ATRIUM_BENCH_BASELINE")  # another source tree of Atrium, timed in the same run
        if baseline:
            port = free_port()
            proc = atrium_start(servers[0], baseline, port, env, "bench-overhead-baseline.log")
            all_procs.append(proc)
            targets["baseline"] = Target("baseline", f"http://127.0.0.1:{port}/v1/messages", atrium_headers, [proc])
        portkey = portkey_start()
        if portkey is not None:
            all_procs.append(portkey[0])
            # Portkey 1.15.2 on Node 20 fails every streamed /v1/messages call (module docstring).
            targets["portkey"] = Target("portkey", portkey[1], {
                "x-portkey-provider": "anthropic", "x-portkey-custom-host": f"{sim_url}/anthropic/v1",
                "x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}, [portkey[0]], streams=False)
        litellm = litellm_start(sim_url)
        if litellm is not None:
            all_procs.append(litellm[0])
            targets["litellm"] = Target("litellm", litellm[1], {"anthropic-version": "2023-06-01",
                                                                "Authorization": f"Bearer {litellm[2]}"}, [litellm[0]])

        calls = interleaved({name: target.call for name, target in targets.items()}, count)
        ttfts = interleaved({name: t.ttft for name, t in targets.items() if t.streams}, max(100, count // 5))
        results: dict[str, dict[str, Any]] = {}
        for name, target in targets.items():
            load = wrk(target, stream=False, seconds=seconds)
            streamed = wrk(target, stream=True, seconds=seconds) if target.streams else None
            values = calls[name]
            results[name] = {
                "p50": statistics.median(values), "p99": percentile(values, 99),
                "ttft_p50": statistics.median(ttfts[name]) if name in ttfts else None,
                "c32": load, "c32_stream": streamed,
                "pss_mb": pss_mb(target.procs),
            }
            stream_text = f"{streamed['rps']:7.1f} req/s" if streamed else "      n/a"
            ttft_text = f"{results[name]['ttft_p50']:6.2f}" if name in ttfts else "   n/a"
            print(f"{name:16s} c1 p50 {results[name]['p50']:6.2f} ms p99 {results[name]['p99']:6.2f} ms  "
                  f"TTFT p50 {ttft_text} ms  c32 {load['rps']:7.1f} req/s p99 {load['p99']:7.1f} ms "
                  f"max {load['max']:7.1f} ms >1s {load['over_1s']}  c32 stream {stream_text}  "
                  f"PSS {results[name]['pss_mb']:6.1f} MB", flush=True)
    finally:
        for proc in reversed(all_procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    emit(summary(results))


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    direct = results["direct"]
    out: dict[str, Any] = {}
    for name, result in results.items():
        if name == "direct":
            continue
        prefix = "" if name == "atrium" else f"{name}_"
        c32, streamed = result["c32"], result["c32_stream"]
        out.update({
            f"{prefix}overhead_p50_ms": round(result["p50"] - direct["p50"], 2),
            f"{prefix}overhead_p99_ms": round(result["p99"] - direct["p99"], 2),
            f"{prefix}ttft_overhead_p50_ms": None if result["ttft_p50"] is None
            else round(result["ttft_p50"] - direct["ttft_p50"], 2),
            f"{prefix}rps_c32": round(c32["rps"], 1),
            f"{prefix}p99_c32_ms": round(c32["p99"], 1),
            f"{prefix}max_c32_ms": round(c32["max"], 1),
            f"{prefix}over_1s_c32": c32["over_1s"],
            f"{prefix}over_2s_c32": c32["over_2s"],
            f"{prefix}errors_c32": c32["errors"] + (streamed["errors"] if streamed else 0),
            f"{prefix}stream_rps_c32": None if streamed is None else round(streamed["rps"], 1),
            f"{prefix}stream_over_1s_c32": None if streamed is None else streamed["over_1s"],
            f"{prefix}pss_mb": round(result["pss_mb"], 1),
        })
    out["direct_rps_c32"] = round(direct["c32"]["rps"], 1)
    if "portkey" in results:
        out["targets"] = targets(results["atrium"], results["portkey"], direct)
        out["targets_met"] = all(out["targets"].values())
        if "atrium_db" in results:
            out["targets_db"] = targets(results["atrium_db"], results["portkey"], direct)
            out["targets_db_met"] = all(out["targets_db"].values())
    return out


def targets(atrium: dict[str, Any], portkey: dict[str, Any], direct: dict[str, Any]) -> dict[str, bool]:
    """Issue 18's targets for one Atrium target against the Portkey gateway, from the same run."""
    portkey_overhead = portkey["p50"] - direct["p50"]
    portkey_stream = portkey["c32_stream"]["rps"] if portkey["c32_stream"] else portkey["c32"]["rps"]
    atrium_stream = atrium["c32_stream"]
    return {
        "rps_c32_at_least_portkey": atrium["c32"]["rps"] >= portkey["c32"]["rps"],
        "no_errors_c32": atrium["c32"]["errors"] == 0 and (atrium_stream is None or atrium_stream["errors"] == 0),
        "stream_rps_c32_at_least_portkey": atrium_stream is not None and atrium_stream["rps"] >= portkey_stream,
        "no_request_over_1s_c32": atrium["c32"]["over_1s"] == 0
        and (atrium_stream is None or atrium_stream["over_1s"] == 0),
        "p99_c32_at_most_portkey": atrium["c32"]["p99"] <= portkey["c32"]["p99"],
        "overhead_p50_at_most_0.75x_portkey": atrium["p50"] - direct["p50"] <= 0.75 * portkey_overhead,
        "ttft_overhead_at_most_portkey_overhead": atrium["ttft_p50"] - direct["ttft_p50"] <= portkey_overhead,
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

"""Which server could serve /v1/messages from an event loop: a bare relay of the call to the provider simulator under
granian (WSGI, ASGI, RSGI), uvicorn (httptools) and a plain asyncio server, beside the direct call and the Portkey
gateway in one run, then the same relay with the per-call work Atrium must do (docs/benchmarks.md, "Event-loop
front for /v1"). Not used by the tests; nothing here is a project dependency.

    .venv/bin/python bench/servers.py [REQUESTS] [TARGETS]

REQUESTS (default 500): c=1 calls per target, the targets taking turns in blocks of 50 (bench/overhead.py's
`interleaved`). TARGETS: a comma list, or `servers` (the default: every bare relay), `work` or `all` (SETS below);
a target is a SERVER followed by any of the +flags, e.g. rsgi+full+burn1.5:
  SERVER  wsgi (granian WSGI, 2 workers x 16 blocking threads, http.client upstream, as config.serve runs Atrium),
          asgi / rsgi (granian, 2 workers), uvicorn (2 workers, httptools, --loop asyncio),
          plain (asyncio.start_server in 2 forked processes sharing one socket)
  +stock  (uvicorn) its own httptools protocol, without TCP_NODELAY (default: the same with it, see _relay.py)
  +httpx  the async upstream client is httpx.AsyncClient (default: asyncio streams, HTTP/1.1 by hand)
  +full   a JSON parse and encode of request and answer, one Redis EVALSHA round trip, a journal line pwritten and
          fdatasynced (group commit) before the answer completes (bench/_relay_work.py)
  +inline (with +full, async servers) the journal's fdatasync in the loop, after one yield, not in a thread
  +redispy (with +full) redis.asyncio for the EVALSHA (default: RESP by hand over asyncio streams)
  +burnMS that much Python CPU per call besides, a stand-in for Atrium's policy code
The servers run from var/bench-servers-venv (created on first run: granian, uvicorn, httptools, httpx, redis pinned
below), the simulator and Portkey (var/bench-portkey, as bench/overhead.py installs it) beside them. Environment:
BENCH_SIM_PORT and BENCH_PORT (the first server's; the next ones follow; default: free ports), BENCH_REDIS (default
REDIS_URL), ATRIUM_BENCH_SECONDS (10), ATRIUM_BENCH_SKIP_PORTKEY=1; BENCH_SIM_URL: a running simulator instead
of one of its own; BENCH_ATRIUM="URL KEY [PID]": also time a running Atrium (/tmp/perf/stand.py's, with its
simulator as BENCH_SIM_URL; its tenant `bench`, PID its server's for the CPU figure) in the same run.

Prints a line per target: c=1 p50/p99 and overhead over the direct call's, the overhead's ratio to Portkey's, wrk
-t2 -c32 requests/s, p99 and errors (JSON, then streamed read to the last byte), server CPU per call under c=32
(user+system of the server's processes over the JSON wrk run / requests); then one JSON line of the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil
from _common import ROOT, emit
from _load import wrk, wrk_ensure
from overhead import BODY, Target, free_port, interleaved, percentile, portkey_start

VENV = ROOT / "var" / "bench-servers-venv"
SPECS = ["granian==2.8.9", "uvicorn==0.54.0", "httptools==0.9.0", "httpx==0.28.1", "redis==8.1.0", "hiredis==3.5.0",
         "sniffio==1.3.1"]  # httpcore imports sniffio on every call; without it that is a failed import each time
SETS = {"servers": "wsgi,asgi,asgi+httpx,rsgi,rsgi+httpx,uvicorn,uvicorn+httpx,plain",
        "work": "wsgi+full,rsgi+full,asgi+full,uvicorn+full,rsgi+full+redispy,rsgi+full+burn1.5,wsgi+full+burn1.5",
        "all": "wsgi,asgi,rsgi,uvicorn,plain,asgi+httpx,wsgi+full,rsgi+full,asgi+full,rsgi+full+inline,"
               "rsgi+full+burn1.5,wsgi+full+burn1.5"}
BENCH = Path(__file__).resolve().parent


def venv_python() -> str:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV} with {' '.join(SPECS)} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *SPECS], check=True)
    return str(python)


def command(server: str, port: int, env: dict[str, str]) -> list[str]:
    python = venv_python()
    if server == "plain":
        return [python, str(BENCH / "_relay.py"), str(port), "2"]
    if server == "uvicorn":
        http = env.get("RELAY_UVICORN_HTTP", "_relay:NoDelayHttpTools")
        return [python, "-m", "uvicorn", "_relay:asgi_app", "--host", "127.0.0.1", "--port", str(port), "--workers",
                "2", "--http", http, "--loop", "asyncio", "--no-access-log", "--log-level", "warning"]
    extra = ["--blocking-threads", "16"] if server == "wsgi" else []
    return [python, "-m", "granian", "--interface", server, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", *extra, "--no-access-log", "--log-level", "warning", f"_relay:{server}_app"]


def relay_env(name: str, upstream: str, journal: str) -> tuple[str, dict[str, str]]:
    server, *flags = name.split("+")
    if server not in ("wsgi", "asgi", "rsgi", "uvicorn", "plain"):
        raise SystemExit(f"unknown server in {name!r}")
    env = dict(os.environ, PYTHONPATH=str(BENCH), RELAY_UPSTREAM=upstream, RELAY_JOURNAL=journal,
               RELAY_REDIS=os.environ.get("BENCH_REDIS", os.environ["REDIS_URL"]))
    for flag in flags:
        if flag == "httpx":
            env["RELAY_CLIENT"] = "httpx"
        elif flag == "full":
            env["RELAY_WORK"] = "full"
        elif flag == "inline":
            env["RELAY_JOURNAL_SYNC"] = "inline"
        elif flag == "redispy":
            env["RELAY_REDIS_CLIENT"] = "redispy"
        elif flag == "stock":  # uvicorn's own httptools protocol: no TCP_NODELAY with --workers (bench/_relay.py)
            env["RELAY_UVICORN_HTTP"] = "httptools"
        elif flag.startswith("burn"):
            env["RELAY_BURN_MS"] = flag[4:]
        else:
            raise SystemExit(f"unknown flag {flag!r} in {name!r}")
    return server, env


def wait_post(url: str, proc: subprocess.Popen[bytes] | None, what: str, timeout: float = 60,
              headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited early (code {proc.returncode})")
        try:
            if httpx.post(url, json=BODY, timeout=5, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} did not answer {url}")


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for proc in procs:
        try:
            root = psutil.Process(proc.pid)
            for member in [root, *root.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group (granian's and uvicorn's workers, the plain server's forks), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    names = [n.strip() for n in SETS.get(sys.argv[2] if len(sys.argv) > 2 else "servers",
                                          sys.argv[2] if len(sys.argv) > 2 else "").split(",") if n.strip()]
    seconds = float(os.environ.get("ATRIUM_BENCH_SECONDS", "10"))
    wrk_ensure()
    sim_port = int(os.environ.get("BENCH_SIM_PORT") or free_port())
    port = int(os.environ.get("BENCH_PORT") or 0)
    sim_url = os.environ.get("BENCH_SIM_URL") or f"http://127.0.0.1:{sim_port}"
    procs: list[subprocess.Popen[bytes]] = []
    (ROOT / "var").mkdir(exist_ok=True)
    journal = tempfile.mkdtemp(prefix="bench-servers-journal-", dir=ROOT / "var")
    results: dict[str, dict[str, Any]] = {}
    try:
        sim_procs: list[subprocess.Popen[bytes]] = []
        if not os.environ.get("BENCH_SIM_URL"):
            sim_procs.append(subprocess.Popen([sys.executable, "-m", "inference.simulator", "--port", str(sim_port)],
                                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              start_new_session=True))
            procs.extend(sim_procs)
        targets = {"direct": Target("direct", f"{sim_url}/anthropic/v1/messages",
                                    {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}, sim_procs)}
        wait_post(targets["direct"].url, sim_procs[0] if sim_procs else None, "simulator",
                  headers=targets["direct"].headers)
        atrium = os.environ.get("BENCH_ATRIUM", "").split()
        if atrium:  # a running Atrium (/tmp/perf/stand.py's, say) on the same simulator: URL KEY [PID]
            running: list[Any] = [SimpleNamespace(pid=int(atrium[2]))] if len(atrium) > 2 else []  # for .pid
            targets["atrium"] = Target("atrium", f"{atrium[0]}/v1/messages", {
                "Host": "bench.localhost", "x-api-key": atrium[1], "anthropic-version": "2023-06-01"}, running)
        for index, name in enumerate(names):
            server, env = relay_env(name, sim_url.removeprefix("http://"), journal)
            target_port = port + index if port else free_port()
            log = (ROOT / "var" / f"bench-servers-{name.replace('+', '_')}.log").open("wb")
            proc = subprocess.Popen(command(server, target_port, env), cwd=BENCH, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            url = f"http://127.0.0.1:{target_port}/v1/messages"
            wait_post(url, proc, name)
            targets[name] = Target(name, url, {"anthropic-version": "2023-06-01"}, [proc])
        portkey = portkey_start()
        if portkey is not None:
            procs.append(portkey[0])
            targets["portkey"] = Target("portkey", portkey[1], {
                "x-portkey-provider": "anthropic", "x-portkey-custom-host": f"{sim_url}/anthropic/v1",
                "x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}, [portkey[0]], streams=False)
        calls = interleaved({name: target.call for name, target in targets.items()}, count)
        for name, target in targets.items():
            before = cpu_seconds(target.procs)
            load = wrk(target, stream=False, seconds=seconds)
            cpu_ms = (cpu_seconds(target.procs) - before) * 1000 / max(1.0, load["rps"] * seconds)
            streamed = wrk(target, stream=True, seconds=seconds) if target.streams else None
            results[name] = {"p50": statistics.median(calls[name]), "p99": percentile(calls[name], 99),
                             "c32": load, "c32_stream": streamed, "cpu_ms": cpu_ms}
    finally:
        for proc in reversed(procs):  # each started in its own session: its group is its workers
            stop(proc)
        shutil.rmtree(journal, ignore_errors=True)
    emit(report(results))


def report(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    direct, portkey = results["direct"], results.get("portkey")
    portkey_overhead = portkey["p50"] - direct["p50"] if portkey else None
    out: dict[str, Any] = {"direct_p50_ms": round(direct["p50"], 2), "direct_rps_c32": round(direct["c32"]["rps"], 1)}
    for name, result in results.items():
        if name == "direct":
            continue
        overhead = result["p50"] - direct["p50"]
        c32, streamed = result["c32"], result["c32_stream"]
        row = {"overhead_p50_ms": round(overhead, 2), "overhead_p99_ms": round(result["p99"] - direct["p99"], 2),
               "vs_portkey_overhead": round(overhead / portkey_overhead, 2) if portkey_overhead else None,
               "rps_c32": round(c32["rps"], 1), "p99_c32_ms": round(c32["p99"], 1), "errors_c32": c32["errors"],
               "vs_portkey_rps": round(c32["rps"] / portkey["c32"]["rps"], 2) if portkey else None,
               "stream_rps_c32": round(streamed["rps"], 1) if streamed else None,
               "stream_p99_c32_ms": round(streamed["p99"], 1) if streamed else None,
               "cpu_ms_per_call_c32": round(result["cpu_ms"], 2)}
        out[name] = row
        stream_text = f"{row['stream_rps_c32']:7.1f} p99 {row['stream_p99_c32_ms']:6.1f}" if streamed else "    n/a"
        print(f"{name:24s} c1 p50 {result['p50']:5.2f} p99 {result['p99']:6.2f} overhead {overhead:5.2f} ms "
              f"({row['vs_portkey_overhead']}x Portkey's)  c32 {row['rps_c32']:6.1f} req/s p99 {row['p99_c32_ms']:6.1f}"
              f" ms ({row['vs_portkey_rps']}x)  streamed {stream_text}  CPU {row['cpu_ms_per_call_c32']:.2f} ms/call",
              flush=True)
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

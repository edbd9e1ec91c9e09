"""bench/overhead.py's load generator (wrk, Debian's package) and memory measurement (PSS of a process tree)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

# wrk's report as one JSON line: its latency statistics hold no counts per value, so the requests over a limit
# are found by bisecting the rank whose percentile crosses it (exact: a percentile is a rank's value).
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["content-type"] = "application/json"
for pair in string.gmatch(os.getenv("WRK_HEADERS"), "[^\\n]+") do
  local name, value = pair:match("^([^:]+): (.*)$")
  wrk.headers[name] = value
end
local function over(latency, n, limit)
  if n == 0 or latency.max <= limit then return 0 end
  local lo, hi = 0, n  -- the answer: the largest rank whose value is <= limit
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if latency:percentile(100.0 * (mid - 0.5) / n) <= limit then lo = mid else hi = mid - 1 end
  end
  return n - lo
end
done = function(summary, latency, requests)
  local n = summary.requests - summary.errors.timeout
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "seconds": %.3f, "p50_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"over_1s": %d, "over_2s": %d, "non2xx": %d, "socket_errors": %d}\\n', summary.requests,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(99), latency.max,
    over(latency, n, 1000000), over(latency, n, 2000000), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_ensure() -> str:
    binary = shutil.which("wrk")
    if binary is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian's package; first run only)", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    return binary


def wrk(target: Any, *, stream: bool, connections: int = 32, seconds: float = 10.0) -> dict[str, float]:
    """wrk -t2 -c`connections` against `target` for `seconds`; a stream is read to its last byte."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    body = target.body
    env = dict(os.environ, WRK_BODY=json.dumps({**body, "stream": True} if stream else body),
               WRK_HEADERS="\n".join(f"{k}: {v}" for k, v in target.headers.items()))
    try:
        result = subprocess.run([wrk_ensure(), "-t2", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "30s",
                                 "-s", script.name, target.url], env=env, capture_output=True, text=True)
    finally:
        os.unlink(script.name)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK ")), None)
    if line is None or result.returncode:
        raise SystemExit(f"{target.name}: wrk failed (code {result.returncode}):\n{result.stdout}\n{result.stderr}")
    report = json.loads(line[4:])
    if report["non2xx"] or report["socket_errors"]:
        print(f"{target.name}{' stream' if stream else ''}: wrk saw {report['non2xx']} non-2xx answers and "
              f"{report['socket_errors']} socket errors (not counted as served)", flush=True)
    served = report["requests"] - report["non2xx"]
    return {"rps": served / report["seconds"], "p50": report["p50_us"] / 1000,
            "p99": report["p99_us"] / 1000, "max": report["max_us"] / 1000, "over_1s": report["over_1s"],
            "over_2s": report["over_2s"], "errors": report["non2xx"] + report["socket_errors"]}


def pss_mb(procs: list[subprocess.Popen[bytes]]) -> float:
    """The proportional set size of these processes and all their descendants (pages shared counted once)."""
    import psutil

    total, seen = 0, set()
    for proc in procs:
        try:
            root = psutil.Process(proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in tree:
            if member.pid in seen:
                continue
            seen.add(member.pid)
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += member.memory_full_info().pss
    return total / 2**20



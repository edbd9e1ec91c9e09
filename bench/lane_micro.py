"""CPU of the /v1 lane in one process, old code against new: config.serve's granian wrapper (with its access line),
config.api_lane.ApiLane, the tenant and request-id middleware and, with `real`, the /v1/messages view itself, as a
granian worker runs them (production settings), around a stub view (`stub`: a 500-byte JSON answer) or the real view
(`real`: API-key authentication, admission, the provider simulator's answer, the record).

The old code is a baseline tree's copies of the lane's modules (MODULES), loaded beside this tree's under other
names, with its own WSGIHandler (settings.MIDDLEWARE pointed at the old copies while it is built) and its own
wrapper; `real` also swaps the view (the old tree's inference/api_v1.py). Blocks of N calls alternate old, new,
new, old...; per block, the request thread's CPU (thread_time_ns) and wall time per call; medians over BLOCKS blocks
of each. The granian side is a stand-in (`_Proto`: response_bytes keeps the answer; the scope is granian's keys).

    .venv/bin/python bench/lane_micro.py setup                       # once: a private database (ATRIUM_BENCH_DB)
    .venv/bin/python bench/lane_micro.py run stub|real BASE_TREE [BLOCKS] [N]
    .venv/bin/python bench/lane_micro.py profile stub|real [N]       # this tree only, cProfile's top entries
    .venv/bin/python bench/lane_micro.py reads BASE_TREE [BLOCKS] [N] # the view's settings-reading helpers alone

BASE_TREE: e.g. `git worktree add --detach /work/base-lane main`. `real` starts the provider simulator (SIM_PORT).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DB = os.environ.get("ATRIUM_BENCH_DB", "atrium_lane_micro")
STATE = Path(f"/tmp/{DB}.json")  # noqa: S108
MODULES = [("config.request_limits", "config/request_limits.py"), ("config.middleware", "config/middleware.py"),
           ("config.api_lane", "config/api_lane.py"),
           ("config.serve", "config/serve.py"), ("config.access_log", "config/access_log.py"),
           ("inference.api_v1", "inference/api_v1.py")]
BODY = json.dumps({"model": "claude-sonnet-5-5", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "Give me one short sentence about benchmarks."}]}).encode()
STUB = json.dumps({"id": "msg_" + "x" * 24, "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
                   "content": [{"type": "text", "text": "y" * 300}], "stop_reason": "end_turn",
                   "usage": {"input_tokens": 12, "output_tokens": 40}}).encode()


def setup() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import bench_database, bench_tenant

    bench_database(DB)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import tenant_context

    from access.services import api_key_create
    from tenants.models import Tenant

    tenant = bench_tenant("bench")
    Tenant.objects.filter(pk=tenant.pk).update(requests_per_minute=10_000_000, tokens_per_day=10_000_000_000,
                                               provider_order=["anthropic"], record_policy="serve_and_journal")
    with tenant_context(tenant):
        user = get_user_model().objects.create_user(username="bench")
        user.groups.add(Group.objects.get(name="power_user"))
        _row, raw = api_key_create(user=user, name="bench")
    STATE.write_text(json.dumps({"key": raw, "encryption_keys": ",".join(settings.ATRIUM_ENCRYPTION_KEYS),
                                 "secret_key": settings.SECRET_KEY}))


def environment(mode: str) -> subprocess.Popen[bytes] | None:
    """Production settings and a stand's environment; the simulator for `real`."""
    state = json.loads(STATE.read_text())
    root = Path(__file__).resolve().parent.parent
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atrium").rsplit("/", 1)[0]
    var = f"/tmp/{DB}-var"  # noqa: S108
    os.makedirs(var, exist_ok=True)
    os.environ.update(DATABASE_URL=f"{server}/{DB}", DJANGO_SETTINGS_MODULE="config.settings.production",
                      DJANGO_SECRET_KEY=state["secret_key"], ATRIUM_ENCRYPTION_KEYS=state["encryption_keys"],
                      ATRIUM_PLATFORM_AUDIT_KEY=secrets.token_urlsafe(32),
                      ATRIUM_AUDIT_CHECKPOINT_KEY=secrets.token_urlsafe(32), ATRIUM_RECORD_JOURNAL_DIR=var + "/journal",
                      ANTHROPIC_API_KEY="sk-ant-bench", ATRIUM_PROVIDER_ORDER="anthropic", ATRIUM_LOG_LEVEL="WARNING")
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    sys.path.insert(0, str(root))
    sim = None
    if mode == "real":
        port = int(os.environ.get("SIM_PORT", "18859"))
        os.environ["ATRIUM_ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{port}/anthropic"
        sim = subprocess.Popen([sys.executable, "-m", "inference.simulator", "--port", str(port)], cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import urllib.request

        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
    import django

    django.setup()
    return sim


def access_logging() -> None:
    """granian.access as granian configures it: one StreamHandler, '%(message)s' (here onto /dev/null)."""
    import logging

    from granian.log import access_logger

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - for the process's life
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.handlers[:] = [handler]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


def load_old(tree: str) -> dict[str, Any]:
    """The baseline tree's MODULES as old_<name> modules importing each other."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import module_from_file

    rewrites = [(f"from {name} import", f"from old_{name.replace('.', '_')} import") for name, _ in MODULES]
    loaded: dict[str, Any] = {}
    for name, path in MODULES:
        source = Path(tree, path).read_text()
        for old, new in rewrites:
            source = source.replace(old, new)
        alias = "old_" + name.replace(".", "_")
        target = Path(f"/tmp/{DB}-old/{alias}.py")  # noqa: S108
        target.parent.mkdir(exist_ok=True)
        target.write_text(source)
        loaded[name] = module_from_file(alias, target)
    return loaded


def build(middleware: Any, api_lane: Any, serve: Any, view: Any) -> Any:
    """A worker's application and its granian wrapper, from these modules."""
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    limits = "old_config_request_limits." if middleware.__name__.startswith("old_") else "config.request_limits."
    chain = [entry.replace("config.middleware.", middleware.__name__ + ".").replace("config.request_limits.", limits)
             for entry in settings.MIDDLEWARE]
    with override_settings(MIDDLEWARE=chain):
        handler = WSGIHandler()
    lane = api_lane.ApiLane(handler)
    assert lane.enabled, "the lane is off"
    lane.server_closes_lists = True
    wrapper = serve.wsgi_callback_wrapper(lane, {}, serve.ACCESS_LOG_FORMAT)
    return lane, wrapper, view


class _Proto:
    __slots__ = ("body", "status")

    def __init__(self) -> None:
        self.body = b""
        self.status = 0

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.body = body

    def response_iter(self, status: int, headers: Any, body: Any) -> None:
        self.status = status
        self.body = b"".join(body)
        close = getattr(body, "close", None)
        if close is not None:
            close()


def scope(key: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/messages", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(BODY), "HTTP_HOST": "bench.localhost",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(BODY)), "HTTP_X_API_KEY": key,
            "HTTP_ANTHROPIC_VERSION": "2023-06-01", "HTTP_USER_AGENT": "lane-micro", "HTTP_ACCEPT": "*/*",
            "HTTP_CONNECTION": "keep-alive"}


def stub_view(request: Any) -> Any:
    from django.http import HttpResponse

    if request.method != "POST":
        raise AssertionError
    return HttpResponse(STUB, content_type="application/json")


def variant(lane: Any, wrapper: Any, view: Any, key: str) -> Any:
    """One call of this variant: the wrapper, with `view` as the resolved /v1/messages view."""
    from django.urls import ResolverMatch, resolve

    proto = _Proto()
    match = resolve("/v1/messages")  # what ApiFastPathMiddleware remembers for a tenant's host (no request.urlconf)
    lane.api._matches[("", "/v1/messages")] = ResolverMatch(view, match.args, match.kwargs, match.url_name,
                                                            route=match.route)
    wrapper(proto, scope(key))
    assert proto.status == 200, (proto.status, proto.body[:300])

    def call() -> None:
        wrapper(proto, scope(key))

    return call


def block(call: Any, n: int) -> tuple[float, float]:
    cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(n):
        call()
    return (time.thread_time_ns() - cpu) / n / 1000, (time.perf_counter_ns() - wall) / n / 1000


def reads(tree: str, blocks: int, n: int) -> None:
    """router.first_byte_budget and request_limits.json_loads_limited (the bench body), the baseline tree's module
    copies against this tree's, in alternating blocks (bench/_ab.alternating_cpu): CPU per pair of calls."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).parent))
    import django

    django.setup()
    from _ab import alternating_cpu
    from _common import module_from_file

    import config.request_limits
    import inference.router
    from inference.types import ProviderTarget

    old_router = module_from_file("old_inference_router", Path(tree, "inference/router.py"))
    old_limits = module_from_file("old_config_request_limits", Path(tree, "config/request_limits.py"))
    target = ProviderTarget(provider="anthropic")
    pairs = {"old": (old_router.first_byte_budget, old_limits.json_loads_limited),
             "new": (inference.router.first_byte_budget, config.request_limits.json_loads_limited)}
    results = alternating_cpu({name: (lambda budget=budget, loads=loads: (budget(target), loads(BODY)))
                               for name, (budget, loads) in pairs.items()}, blocks, n, warm=n // 10)
    out: dict[str, Any] = {name: {"cpu_us_median": round(statistics.median(v), 3), "cpu_us_min": round(min(v), 3),
                                  "cpu_us_max": round(max(v), 3)} for name, v in results.items()}
    out["new_lower_cpu_in"] = f"{sum(1 for o, w in zip(results['old'], results['new'], strict=True) if w < o)}/{blocks}"
    print(json.dumps({"mode": "reads", "blocks": blocks, "n": n, **out}), flush=True)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "run"
    if command == "reads":
        reads(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 21,
              int(sys.argv[4]) if len(sys.argv) > 4 else 20000)
        return
    if command == "setup":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        setup()
        return
    mode = sys.argv[2] if len(sys.argv) > 2 else "stub"
    sim = environment(mode)
    try:
        access_logging()
        import config.access_log
        import config.api_lane
        import config.middleware
        import config.serve
        import inference.api_v1
        from inference.records import recorder_start

        if mode == "real":
            recorder_start()
        key = json.loads(STATE.read_text())["key"]
        new = variant(*build(config.middleware, config.api_lane, config.serve,
                             inference.api_v1.messages if mode == "real" else stub_view), key)
        if command == "profile":
            import cProfile
            import pstats

            n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
            block(new, n)
            profile = cProfile.Profile()
            profile.enable()
            block(new, n)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(int(os.environ.get("TOP", "45")))
            return
        old_modules = load_old(sys.argv[3])
        old = variant(*build(old_modules["config.middleware"], old_modules["config.api_lane"],
                             old_modules["config.serve"],
                             old_modules["inference.api_v1"].messages if mode == "real" else stub_view), key)
        blocks = int(sys.argv[4]) if len(sys.argv) > 4 else 15
        n = int(sys.argv[5]) if len(sys.argv) > 5 else 5000
        for each in (old, new):
            block(each, n // 5)
        results: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
        for i in range(blocks):
            order = (("old", old), ("new", new)) if i % 2 == 0 else (("new", new), ("old", old))
            for name, each in order:
                results[name].append(block(each, n))
        out = {}
        for name, values in results.items():
            out[name] = {"cpu_us_median": round(statistics.median(v[0] for v in values), 2),
                         "cpu_us_min": round(min(v[0] for v in values), 2),
                         "wall_us_median": round(statistics.median(v[1] for v in values), 2)}
        wins = sum(1 for o, n_ in zip(results["old"], results["new"], strict=True) if n_[0] < o[0])
        out["new_lower_cpu_in"] = f"{wins}/{blocks}"
        out["load"] = os.getloadavg()[0]
        print(json.dumps({"mode": mode, "blocks": blocks, "n": n, **out}), flush=True)
    finally:
        if sim is not None:
            sim.terminate()


if __name__ == "__main__":
    main()

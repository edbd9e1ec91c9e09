"""CPU of the upstream exchange, old code against new, in one process: `route()` (a non-streaming call's exchange:
open the attempt, write the request, read and fold the provider's stream) or `route_stream()` and its SSE pieces,
against the provider simulator (started here), the two versions interleaved round by round.

The old version is the upstream modules (http1, anthropic_stream, anthropic_api, streaming, attempts, router,
config/http) as they are at git revision BASE, loaded beside the working tree's under other names, each with its own
client (a cached client per credentials). No database: the catalog entry is given, the breaker's answer too.
CPU time of this thread per call (the simulator is another process), min and median over ROUNDS rounds of N calls.

    .venv/bin/python bench/upstream_ab.py [BASE] [route|stream] [ROUNDS] [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

MODULES = [("http", "config/http.py"), ("http1", "inference/providers/http1.py"),
           ("anthropic_stream", "inference/providers/anthropic_stream.py"),
           ("anthropic_api", "inference/providers/anthropic_api.py"), ("streaming", "inference/streaming.py"),
           ("attempts", "inference/attempts.py"), ("router", "inference/router.py")]
# The old modules import each other, not the working tree's.
REWRITES = [("from inference.providers import http1", "import old_http1 as http1"),
            ("from inference.providers.anthropic_stream import", "from old_anthropic_stream import"),
            ("from inference.streaming import", "from old_streaming import"),
            ("from inference.attempts import", "from old_attempts import"),
            ("from config.http import", "from old_http import")]
PARAMS = {"max_tokens": 64, "messages": [{"role": "user", "content": "Give me one short sentence about benchmarks."}]}


def load_old(base: str) -> dict[str, types.ModuleType]:
    loaded = {}
    for name, path in MODULES:
        source = subprocess.run(["git", "show", f"{base}:{path}"], capture_output=True, text=True, check=True,
                                cwd=ROOT).stdout
        for old, new in REWRITES:
            source = source.replace(old, new)
        module = types.ModuleType(f"old_{name}")
        module.__file__ = f"{base}:{path}"
        sys.modules[module.__name__] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102  # the repository's own code
        loaded[name] = module
    return loaded


def calls(mode: str, old: dict[str, types.ModuleType]) -> dict[str, Callable[[], Any]]:
    from django.conf import settings

    from config import http as new_http
    from inference import breaker
    from inference import router as new_router
    from inference.catalog.selectors import CatalogEntry
    from inference.providers import anthropic_api as new_api
    from inference.providers import base
    from inference.targets import parse_target
    from inference.types import MessageRequest

    entry = CatalogEntry("claude-sonnet-5-5", "Sonnet", "sonnet", datetime.now(UTC), "claude-sonnet-5-5", "", "", "",
                         300)
    request = MessageRequest(model="claude-sonnet-5-5", params=PARAMS)
    out: dict[str, Callable[[], Any]] = {}
    for label, router, api, http in (("old", old["router"], old["anthropic_api"], old["http"]),
                                     ("new", new_router, new_api, new_http)):
        router._resolve = lambda request: entry  # type: ignore[attr-defined]
        target = parse_target("anthropic", {"api_key": f"sk-ant-{label}"})
        client = api.AnthropicClient(api_key=f"sk-ant-{label}", base_url=settings.ATRIUM_ANTHROPIC_BASE_URL,
                                     timeout=30)
        base._store(base._key(target), base._Entry(client, target, None))
        admissions = {target.key: breaker.ALLOW_CLEAN}
        if mode == "route":
            def call(router: Any = router, target: Any = target, admissions: Any = admissions) -> Any:
                return router.route(request, [target], admissions=admissions).message
        else:
            options = {"first_alone": False} if "first_alone" in http.sse.__code__.co_varnames else {}

            def call(router: Any = router, target: Any = target, admissions: Any = admissions, http: Any = http,
                     options: Any = options) -> Any:
                stream = router.route_stream(request, [target], admissions=admissions)
                return sum(len(piece) for piece in http.sse(stream, **options))
        out[label] = call
    return out


def main() -> None:
    base_rev = sys.argv[1] if len(sys.argv) > 1 else "main"
    mode = sys.argv[2] if len(sys.argv) > 2 else "route"
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    import django

    django.setup()
    from django.conf import settings

    from inference.simulator import Simulator

    with Simulator() as simulator:
        settings.ATRIUM_ANTHROPIC_BASE_URL = f"{simulator.url}/anthropic"
        variants = calls(mode, load_old(base_rev))
        for call in variants.values():
            for _ in range(300):
                call()
        results: dict[str, list[float]] = {label: [] for label in variants}
        for round_ in range(rounds):
            for label in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
                call = variants[label]
                start = time.thread_time()
                for _ in range(count):
                    call()
                results[label].append((time.thread_time() - start) / count * 1e6)
    for label, values in results.items():
        print(f"{label} ({base_rev if label == 'old' else 'working tree'}) {mode}: CPU us per call "
              f"min {min(values):.1f} median {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()

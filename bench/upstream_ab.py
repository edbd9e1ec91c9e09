"""CPU of the upstream exchange, old code against new, in one process: `route()` (a non-streaming call's exchange:
open the attempt, write the request, read and fold the provider's stream) or `route_stream()` and its SSE pieces,
against an upstream started here, the two versions interleaved round by round.

The old version is the upstream modules (http1, anthropic_stream, anthropic_api, streaming, attempts, router,
providers/base, tracing, config/http, config/wire) as they are at git revision BASE, loaded beside the working
tree's under other names, each with its own client (a cached client per credentials). No database: the catalog
entry is given, the breaker's answer too. CPU time of this thread per call, min and median over ROUNDS rounds of N
calls.

MODE `take`: no exchange, only `http1.Answer._take` of the body of the simulator's answer as it comes (chunked, an
event a chunk), all of it in the buffer (UPSTREAM `canned`) or one chunk (`sim`: as at c=1, where its chunks arrive
apart).

UPSTREAM: `sim` (default) the provider simulator, in this process's threads, which writes each event of its stream
apart (several reads per answer at c=1); `canned` a process of its own that answers every request with the
simulator's answer captured once, in one write (an answer in one read, as at c=32 on a loaded machine).

    .venv/bin/python bench/upstream_ab.py [BASE] [route|stream|take] [ROUNDS] [N] [sim|canned]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

from _ab import alternating_cpu  # noqa: E402  (bench/ is on sys.path when run)

MODULES = [("http", "config/http.py"), ("wire", "config/wire.py"), ("http1", "inference/providers/http1.py"),
           ("anthropic_stream", "inference/providers/anthropic_stream.py"),
           ("anthropic_api", "inference/providers/anthropic_api.py"), ("streaming", "inference/streaming.py"),
           ("base", "inference/providers/base.py"), ("tracing", "inference/tracing.py"),
           ("attempts", "inference/attempts.py"), ("router", "inference/router.py")]
# The old modules import each other, not the working tree's.
REWRITES = [("from inference.providers import http1", "import old_http1 as http1"),
            ("from inference.providers.anthropic_stream import", "from old_anthropic_stream import"),
            ("from inference.streaming import", "from old_streaming import"),
            ("from inference.attempts import", "from old_attempts import"),
            ("from config.http import", "from old_http import"), ("from config.wire import", "from old_wire import"),
            ("from inference.providers.base import", "from old_base import"),
            ("from inference.tracing import", "from old_tracing import")]
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
    from inference.providers import base as new_base
    from inference.targets import parse_target
    from inference.types import MessageRequest

    entry = CatalogEntry("claude-sonnet-5-5", "Sonnet", "sonnet", datetime.now(UTC), "claude-sonnet-5-5", "", "", "",
                         300)
    request = MessageRequest(model="claude-sonnet-5-5", params=PARAMS)
    out: dict[str, Callable[[], Any]] = {}
    for label, router, api, http, base in (("old", old["router"], old["anthropic_api"], old["http"], old["base"]),
                                           ("new", new_router, new_api, new_http, new_base)):
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


CANNED = r"""
import socket, sys, threading
answer = sys.stdin.buffer.read()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)


def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            continue
        head = buf[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15:head.find(b"\r\n", at)]) if at >= 0 else 0
        while len(buf) < end + 4 + length:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        buf = buf[end + 4 + length:]
        conn.sendall(answer)


while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""


def captured_answer(url: str) -> bytes:
    """The simulator's whole answer (head and chunked SSE body) to the bench's streamed request."""
    import json
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = json.dumps({**PARAMS, "model": "claude-sonnet-5-5", "stream": True}).encode()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(b"POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: sk-ant-x\r\n"
                     b"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = b""
        while not answer.endswith(b"\r\n0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer


def takes(old: types.ModuleType, answer: bytes, whole: bool) -> dict[str, Callable[[], Any]]:
    """Answer._take of `answer`'s body (all of it, or its second chunk alone), old and new."""
    from inference.providers import http1

    body = answer[answer.index(b"\r\n\r\n") + 4:]
    if not whole:
        second = body.index(b"\r\n", body.index(b"\r\n") + 2) + 2  # after the first chunk's data and CRLF
        body = body[second:body.index(b"\r\n", body.index(b"\r\n", second) + 2) + 2]
    out: dict[str, Callable[[], Any]] = {}
    for label, module in (("old", old), ("new", http1)):
        def take(module: Any = module) -> Any:
            answer = module.Answer.__new__(module.Answer)
            answer._buf, answer._framing, answer._left, answer.done = body, module._CHUNKED, module._SIZE_LINE, False
            return answer._take(), answer._buf, answer._left, answer.done
        out[label] = take
    if out["old"]() != out["new"]():
        raise SystemExit("the two versions read the body differently")
    return out


def main() -> None:
    base_rev = sys.argv[1] if len(sys.argv) > 1 else "main"
    mode = sys.argv[2] if len(sys.argv) > 2 else "route"
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    upstream = sys.argv[5] if len(sys.argv) > 5 else "sim"
    import django

    django.setup()
    from django.conf import settings

    from inference.simulator import Simulator

    with Simulator() as simulator:
        settings.ATRIUM_ANTHROPIC_BASE_URL = f"{simulator.url}/anthropic"
        canned = None
        if upstream == "canned":
            canned = subprocess.Popen([sys.executable, "-c", CANNED], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert canned.stdin is not None
            assert canned.stdout is not None
            canned.stdin.write(captured_answer(simulator.url))
            canned.stdin.close()
            settings.ATRIUM_ANTHROPIC_BASE_URL = f"http://127.0.0.1:{int(canned.stdout.readline())}/anthropic"
        try:
            if mode == "take":
                variants = takes(load_old(base_rev)["http1"], captured_answer(simulator.url), upstream == "canned")
            else:
                variants = calls(mode, load_old(base_rev))
            results = alternating_cpu(variants, rounds, count, warm=300)
        finally:
            if canned is not None:
                canned.kill()
                canned.wait()
    for label, values in results.items():
        print(f"{label} ({base_rev if label == 'old' else 'working tree'}) {mode} {upstream}: CPU us per call "
              f"min {min(values):.1f} median {statistics.median(values):.1f}")
    differences = [new - old for old, new in zip(results["old"], results["new"], strict=True)]
    print(f"new - old, round by round: median {statistics.median(differences):+.1f} us per call")


if __name__ == "__main__":
    main()

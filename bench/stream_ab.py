"""CPU of a streamed /v1/messages call's relay, old code against new, in one process: the view's streaming branch
(inference.api_v1.messages), gateway_stream, route_stream, the provider stream's parsing, decoding and folding, the
SSE framing and the StreamingHttpResponse iterated to its end and closed, as the server does. MODE `json`: a
non-streaming call instead (the view's JSON branch, gateway_complete, route, the stream folded into the Message, the
JSON answer). DELTAS: the answer's number of text deltas (the simulator's 7 by default). The provider's answer
is the simulator's answer to bench/overhead.py's request, as canned bytes arriving in READS reads (1: all at once,
as at c=32 on a busy machine; 2: message_start's read, then the rest; 13: each event in its own read, as at c=1).
Authentication, admission and the records are stubbed (the same for both: not the relay's work); no network.

The old version is the relay's modules (config/http, inference/types, streaming, providers/anthropic_stream,
providers/anthropic_api, router, gateway, api_v1) as they are in the tree BASE, loaded beside the working tree's
under other names; the two alternate block by block. CPU time of this thread per call, min, median and max over ROUNDS
blocks of N calls, what the new saved block by block (min, median, max), and the bytes each wrote (they must be
equal).

    .venv/bin/python bench/stream_ab.py BASE_TREE [READS] [ROUNDS] [N] [stream|json] [DELTAS]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

from _ab import alternating_cpu  # noqa: E402  (bench/ is on sys.path when run)

# (name, path): loaded in this order, each importing the old versions of those before it.
MODULES = [("http", "config/http.py"), ("types", "inference/types.py"), ("streaming", "inference/streaming.py"),
           ("anthropic_stream", "inference/providers/anthropic_stream.py"),
           ("anthropic_api", "inference/providers/anthropic_api.py"), ("router", "inference/router.py"),
           ("gateway", "inference/gateway.py"), ("api_v1", "inference/api_v1.py")]
IMPORTS = {"http": "config.http", "types": "inference.types", "streaming": "inference.streaming",
           "anthropic_stream": "inference.providers.anthropic_stream",
           "anthropic_api": "inference.providers.anthropic_api", "router": "inference.router",
           "gateway": "inference.gateway"}

# The simulator's answer to bench/overhead.py's request (inference/simulator: 13 events, a ping among them).
_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_sim_c6496b34655848d4b8a6aca0", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 18, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                  "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    *[("content_block_delta",
       {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
      for text in ("## One short ", "sentence benchmarks\n\nSimulated ", "answer c2c11c43 from ",
                   "anthropic (claude-sonnet-5-5). You ", "asked: Give me ", "one short sentence ",
                   "about benchmarks.")],
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 38}}),
    ("message_stop", {"type": "message_stop"}),
]
FRAMES = [f"event: {name}\ndata: {json.dumps(event)}\n\n".encode() for name, event in _EVENTS]
BODY = {"model": "claude-sonnet-5-5", "max_tokens": 64, "stream": True,
        "messages": [{"role": "user", "content": "Give me one short sentence about benchmarks."}]}


def frames(deltas: int) -> list[bytes]:
    """FRAMES with `deltas` text deltas (the simulator's seven, repeated) instead of its seven."""
    if deltas == 7:
        return FRAMES
    return [*FRAMES[:3], *(FRAMES[3 + i % 7] for i in range(deltas)), *FRAMES[10:]]


def reads(count: int, deltas: int = 7) -> list[bytes]:
    answer = frames(deltas)
    if count <= 1:
        return [b"".join(answer)]
    if count == 2:
        return [answer[0], b"".join(answer[1:])]
    return list(answer)


class Reads:
    """An answer whose body arrives in the given reads."""

    status = 200
    connection = None

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    def read1(self, amt: int = -1) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def load(tree: Path) -> dict[str, types.ModuleType]:
    """The relay's modules as they are in `tree`, importing each other (old_<name>), not this tree's."""
    loaded: dict[str, types.ModuleType] = {}
    for name, path in MODULES:
        source = (tree / path).read_text()
        for other in loaded:
            dotted = IMPORTS[other]
            package, _, leaf = dotted.rpartition(".")
            source = source.replace(f"from {dotted} import", f"from old_{other} import")
            source = source.replace(f"from {package} import {leaf}\n", f"import old_{other} as {leaf}\n")
        module = types.ModuleType(f"old_{name}")
        module.__file__ = str(tree / path)
        sys.modules[module.__name__] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102  # the repository's own code
        loaded[name] = module
    return loaded


def current() -> dict[str, types.ModuleType]:
    import importlib

    return {name: importlib.import_module(IMPORTS.get(name, "inference.api_v1")) for name, _ in MODULES}


def variant(mods: dict[str, types.ModuleType], chunks: list[bytes], stream: bool = True) -> Any:
    """A function making one streamed call through `mods` and returning the bytes written."""
    from django.test import RequestFactory

    from inference import breaker
    from inference.attempts import Opened
    from inference.catalog.selectors import CatalogEntry
    from inference.targets import parse_target

    entry = CatalogEntry("claude-sonnet-5-5", "Sonnet", "sonnet", datetime.now(UTC), "claude-sonnet-5-5", "", "", "",
                         300)
    target = parse_target("anthropic", {"api_key": "sk-ant-bench"})
    client = mods["anthropic_api"].AnthropicClient(api_key="sk-ant-bench", base_url="http://127.0.0.1:9", timeout=5)
    direct = mods["anthropic_stream"].DirectStream

    def open_first(walk: Any, params: Any, budget: Any) -> Any:
        target, model_id, admission = walk.next_candidate()
        stream = direct(client, Reads(chunks), b"{}")
        iterator = iter(stream)
        first = next(iterator)
        return Opened(target, model_id, admission, time.monotonic(), 5.0, stream=stream, first=first,
                      iterator=iterator)

    router, gateway, api_v1 = mods["router"], mods["gateway"], mods["api_v1"]
    router._resolve = lambda request: entry
    router.open_first = open_first
    recorded = object()
    gateway._record = lambda admitted, **kwargs: (recorded, None)
    request_type = mods["types"].MessageRequest if hasattr(mods["types"], "MessageRequest") else None
    admitted = types.SimpleNamespace(
        message_request=request_type(model="claude-sonnet-5-5", params=BODY), targets=[target],
        admissions={target.key: breaker.ALLOW_CLEAN}, call=types.SimpleNamespace(tenant=object()), entry=entry,
        clamp_headers={})
    api_v1._authenticate = lambda request: (None, api_v1.AuthInfo(method="api_key", tenant="bench"))
    api_v1.gateway_admit = lambda call: admitted
    api_v1.Call = lambda **kwargs: None
    api_v1.connection = types.SimpleNamespace(tenant=None)
    request = RequestFactory().post("/v1/messages", data=json.dumps({**BODY, "stream": stream}),
                                    content_type="application/json")

    def call() -> bytes:
        response = api_v1.messages(request)
        pieces = list(response)  # as the server: one next() per piece, then close() (the /v1 lane's closers)
        for close in response._resource_closers:
            close()
        return b"".join(pieces) + b"|" * len(pieces)

    return call


def main() -> None:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    count_reads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    mode = sys.argv[5] if len(sys.argv) > 5 else "stream"
    deltas = int(sys.argv[6]) if len(sys.argv) > 6 else 7
    import django

    django.setup()
    chunks = reads(count_reads, deltas)
    variants = {"old": variant(load(base), chunks, mode != "json"), "new": variant(current(), chunks, mode != "json")}
    written = {label: call() for label, call in variants.items()}
    for label, data in written.items():
        print(f"{label}: {data.count(b'|')} pieces, {len(data)} bytes")
    if written["old"].replace(b"|", b"") != written["new"].replace(b"|", b""):
        raise SystemExit("the two versions wrote different bytes")
    results = alternating_cpu(variants, rounds, count, warm=500)
    for label, values in results.items():
        print(f"{label} ({base if label == 'old' else 'working tree'}) {mode} reads={count_reads}: CPU us per call "
              f"min {min(values):.1f} median {statistics.median(values):.1f} max {max(values):.1f}")
    old, new = statistics.median(results["old"]), statistics.median(results["new"])
    saved = sorted(a - b for a, b in zip(results["old"], results["new"], strict=True))  # block by block
    print(json.dumps({"mode": mode, "reads": count_reads, "deltas": deltas, "old_median_us": round(old, 1),
                      "new_median_us": round(new, 1), "saved_us": round(old - new, 1),
                      "saved_per_block_us": [round(saved[0], 1), round(statistics.median(saved), 1),
                                             round(saved[-1], 1)]}))


if __name__ == "__main__":
    main()

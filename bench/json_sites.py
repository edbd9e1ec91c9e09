"""json vs config.jsonfast (orjson) at each JSON call site of a /v1/messages call, in one process, interleaved.

    .venv/bin/python bench/json_sites.py [rounds=15] [loops=400]

The inputs (bench/json_samples.json) are what the sites encoded and decoded during a call through the test
client and the simulator (a non-streamed and a streamed call; values as captured). Each site's old code (json's
encoder built once, as the sites had it) and new code run alternately, `loops` passes over the site's samples per
measure, `rounds` measures each; the best and the median per call are printed, in microseconds (perf_counter_ns:
the machine's other load inflates the medians, json's more than orjson's; the best of the rounds is the figure).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ROOT, emit

SAMPLES = Path(__file__).with_name("json_samples.json")


def _median_us(fn: Callable[[Any], Any], samples: list[Any], loops: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(loops):
        for sample in samples:
            fn(sample)
    return (time.perf_counter_ns() - start) / (loops * len(samples)) / 1000


def main() -> None:
    opts = dict(a.split("=", 1) for a in sys.argv[1:])
    rounds, loops = int(opts.get("rounds", 15)), int(opts.get("loops", 400))
    import django

    django.setup()
    from django.core.serializers.json import DjangoJSONEncoder

    from audit import chain
    from audit.verify import canonical_text
    from config import jsonfast

    samples = json.loads(SAMPLES.read_text())
    compact = json.JSONEncoder(separators=(",", ":")).encode
    line = json.JSONEncoder(separators=(",", ":"), default=str).encode
    django_default = DjangoJSONEncoder().default
    response = json.JSONEncoder(default=django_default).encode
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    def event_old(data: bytes) -> Any:  # inference.providers.anthropic_stream.DirectStream._decoded
        text = data.decode()
        value, end = scan(text, 0)
        return value if end == len(text) else json.loads(data)

    def body_old(raw: bytes) -> Any:  # config.request_limits.json_loads_limited before
        value = json.loads(raw)
        assert raw.count(b"[") + raw.count(b"{") <= 64
        return value

    def body_new(raw: bytes) -> Any:
        value = jsonfast.loads_strict(raw)
        assert raw.count(b"[") + raw.count(b"{") <= 64
        return value

    def json_text_old(value: Any) -> Any:  # audit.chain.json_text before (a native value: the walk, json's text)
        return value, canonical_text(value) if chain._json_native(value, 0) else None

    def raw(name: str) -> list[bytes]:
        return [s.encode() for s in samples[name]]

    # (site, calls of it per non-streamed /v1/messages call, samples, old, new)
    sites: list[tuple[str, int, list[Any], Callable[[Any], Any], Callable[[Any], Any]]] = [
        ("admission arguments (config.admission)", 2, samples["admission"], compact, jsonfast.dumps),
        ("upstream request (anthropic_api)", 1, samples["upstream_request"], lambda v: compact(v).encode(),
         jsonfast.dumps),
        ("answer (api_v1.json_response)", 1, samples["response"], lambda v: response(v).encode(),
         lambda v: jsonfast.dumps(v, django_default)),
        ("journal line (records.record_encode)", 1, samples["record"], line,
         lambda v: jsonfast.dumps_text(v, str)),
        ("usage rows (services.usage_rows_json)", 1, samples["usage_rows"], compact, jsonfast.dumps_text),
        ("request body (json_loads_limited)", 1, raw("request_body"), body_old, body_new),
        ("audit canonical text (chain.json_text)", 2, samples["canonical"][:4], json_text_old, chain.json_text),
        ("payload hash text (chain.canonical_fast)", 2, samples["canonical"][4:], canonical_text,
         chain.canonical_fast),
        ("SSE frame (config.http, not Framed)", 0, samples["sse_event"], lambda v: compact(v).encode(),
         jsonfast.dumps),
        ("upstream answer (not switched)", 0, raw("upstream_answer"), json.loads, jsonfast.loads),
        ("upstream SSE event (not switched)", 0, raw("upstream_event"), event_old, jsonfast.loads),
    ]
    per_call_old = per_call_new = 0.0
    results = []
    for site, per_call, values, old, new in sites:
        olds, news = [], []
        for _ in range(rounds):
            olds.append(_median_us(old, values, loops))
            news.append(_median_us(new, values, loops))
        o, n = min(olds), min(news)
        per_call_old += per_call * o
        per_call_new += per_call * n
        results.append({"site": site, "old_us": round(o, 2), "new_us": round(n, 2),
                        "old_median_us": round(statistics.median(olds), 2),
                        "new_median_us": round(statistics.median(news), 2)})
        print(f"{site:42s} json {o:6.2f} us  orjson {n:6.2f} us  ({100 * (n - o) / o:+4.0f}%)   medians "
              f"{statistics.median(olds):6.2f} / {statistics.median(news):6.2f} us", flush=True)
    print(f"a non-streamed call's switched sites (best of {rounds}): json {per_call_old:.1f} us, orjson "
          f"{per_call_new:.1f} us", flush=True)
    emit({"bench": "json_sites", "root": str(ROOT), "rounds": rounds, "loops": loops, "sites": results,
          "per_call_old_us": round(per_call_old, 1), "per_call_new_us": round(per_call_new, 1)})


if __name__ == "__main__":
    main()

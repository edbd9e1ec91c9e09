"""The streamed relay of the direct stream (DirectStream.relayed with Fold.append, inference.streaming.relay_pieces)
writes a run of text deltas in the providers' form as it came and folds it at once: the same pieces (bytes and
boundaries) as the relay without runs, and the same bytes, Message, incomplete and error as the event-by-event relay,
for test_fold_rest's answers at every split into reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inference.providers.anthropic_stream import DirectStream
from tests.inference.test_fold_rest import BODIES, CLIENT, Reads, splits


def relayed(chunks: list[bytes], *, runs: bool) -> tuple[list[bytes], Any]:
    """relay_pieces over the direct stream (as /v1 relays a stream): its pieces, framed as the gateway frames
    them, and the Message, incomplete and error; `runs`: with the runs of text deltas folded at once."""
    from config.http import sse_frame
    from inference.streaming import relay_pieces
    from inference.types import RouterStream

    stream = DirectStream(CLIENT, Reads(list(chunks)), b"{}")
    iterator = iter(stream)
    try:
        first = next(iterator)
    except Exception as exc:
        return [], (type(exc), str(exc))
    stream.framed = True  # as route_stream does once the stream is chosen
    result = RouterStream(events=iter(()), provider="anthropic", region="", model_id="m", attempts=[], started_at=0)
    pieces = [b"".join(part if type(part) is bytes else sse_frame(part) for part in parts)
              for parts in relay_pieces(result, first, iterator, lambda exc: f"{type(exc).__name__}: {exc}",
                                        stream.relayed if runs else lambda add, append: stream.relayed(add))]
    return pieces, (json.dumps(result.message, ensure_ascii=False), result.incomplete, result.error)


def by_events(chunks: list[bytes]) -> tuple[bytes, Any]:
    """What the event-by-event relay writes and folds."""
    from config.http import sse_frame
    from inference.streaming import relay
    from inference.types import RouterStream

    stream = DirectStream(CLIENT, Reads(list(chunks)), b"{}")
    iterator = iter(stream)
    try:
        first = next(iterator)
    except Exception as exc:
        return b"", (type(exc), str(exc))
    stream.framed = True
    result = RouterStream(events=iter(()), provider="anthropic", region="", model_id="m", attempts=[], started_at=0)
    written = b"".join(sse_frame(event) for event in relay(result, first, iterator,
                                                            lambda exc: f"{type(exc).__name__}: {exc}"))
    return written, (json.dumps(result.message, ensure_ascii=False), result.incomplete, result.error)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_the_relay_writes_and_folds_runs_of_deltas_as_event_by_event(name: str) -> None:
    # The same pieces (bytes and boundaries) with runs folded at once as without, the same bytes and Message as
    # the event-by-event relay, however the answer is split into reads.
    data = BODIES[name]
    for chunks in splits(data):
        pieces, outcome = relayed(chunks, runs=True)
        assert (pieces, outcome) == relayed(chunks, runs=False), chunks
        assert (b"".join(pieces), outcome) == by_events(chunks), chunks

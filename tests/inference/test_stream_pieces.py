"""/v1's relay, a read of the provider's at a time (DirectStream.relayed, inference.streaming.relay_pieces, the
gateway's Events.pieces): the bytes and the folded Message are those of the event-by-event relay, the events that
arrived together go out as one piece, and message_stop waits for the records."""

from __future__ import annotations

import json
import types
from typing import Any

from config.http import Framed
from inference.providers.anthropic_stream import DirectStream
from tests.inference.test_sse_parse import Reads
from tests.inference.test_stream_relay import CLIENT, events_of


def _stream_of(chunks: list[bytes]) -> tuple[DirectStream, Any, Any]:
    stream = DirectStream(CLIENT, Reads(chunks), b"{}")
    iterator = iter(stream)
    first = next(iterator)
    stream.framed = True  # as route_stream does once the stream is chosen
    return stream, first, iterator


def _router_stream() -> Any:
    from inference.types import RouterStream

    return RouterStream(events=iter(()), provider="anthropic", region="", model_id="m", attempts=[], started_at=0)


def by_reads(chunks: list[bytes]) -> tuple[list[bytes], Any]:
    """The pieces relay_pieces hands out (dict parts framed as the gateway frames them) and the stream."""
    from config.http import sse_frame
    from inference.streaming import relay_pieces

    stream, first, iterator = _stream_of(chunks)
    result = _router_stream()
    pieces = [b"".join(part if type(part) is bytes else sse_frame(part) for part in parts)
              for parts in relay_pieces(result, first, iterator, lambda exc: "failed", stream.relayed)]
    return pieces, result


def by_events(chunks: list[bytes]) -> tuple[list[bytes], Any]:
    """What the event-by-event relay writes, a frame per event, and the stream."""
    from config.http import sse_frame
    from inference.streaming import relay

    _stream, first, iterator = _stream_of(chunks)
    result = _router_stream()
    return [sse_frame(event) for event in relay(result, first, iterator, lambda exc: "failed")], result


def sse_body(*events: tuple[str, str]) -> bytes:
    return b"".join(f"event: {name}\ndata: {data}\n\n".encode() for name, data in events)


START = '{"type": "message_start", "message": {"id": "m1", "model": "x", "content": [], "usage": {"input_tokens": 3}}}'
BODY = sse_body(
    ("message_start", START),
    ("content_block_start",
     '{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}'),
    ("ping", '{"type": "ping"}'),
    *[("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": f"w\u00e9{i} "}}))
      for i in range(5)],
    ("content_block_stop", '{"type": "content_block_stop", "index": 0}'),
    ("message_delta", '{"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}'),
    ("message_stop", '{"type": "message_stop"}'))


def test_read_by_read_the_relay_writes_the_bytes_and_folds_the_message_event_by_event_would() -> None:
    splits = [[BODY], [BODY[:40], BODY[40:]], [BODY[:1], BODY[1:]]]
    splits += [[BODY[:at], BODY[at:]] for at in range(len(START) + 20, len(BODY), 7)]
    splits.append([frame + b"\n\n" for frame in BODY.split(b"\n\n") if frame])  # an event a read
    for chunks in splits:
        pieces, result = by_reads(chunks)
        frames, expected = by_events(chunks)
        assert b"".join(pieces) == b"".join(frames), chunks
        assert result.message == expected.message and expected.message["stop_reason"] == "end_turn"
        assert not result.incomplete and result.error is None


def test_read_by_read_a_read_is_one_piece_with_the_first_event_joining_its_read() -> None:
    events = BODY.split(b"\n\n")[:-1]
    first_read = b"\n\n".join(events[:2]) + b"\n\n"  # message_start and content_block_start together
    pieces, _result = by_reads([first_read, BODY[len(first_read):]])
    frames, _ = by_events([BODY])
    assert pieces == [frames[0] + frames[1], b"".join(frames[2:])]
    stream, _first, _iterator = _stream_of([first_read, BODY[len(first_read):]])
    lists = list(stream.relayed(lambda event: None))
    assert [[type(part) for part in parts] for parts in lists] == [[bytes], [bytes, Framed]]  # a run; message_stop
    assert lists[1][1] == {"type": "message_stop"} and lists[1][1].data == b'{"type": "message_stop"}'


def test_read_by_read_the_first_event_goes_out_before_anything_more_is_read() -> None:
    from inference.streaming import relay_pieces

    events = BODY.split(b"\n\n")
    reads = Reads([events[0] + b"\n\n", b"\n\n".join(events[1:])])
    stream = DirectStream(CLIENT, reads, b"{}")
    iterator = iter(stream)
    first = next(iterator)
    pieces = relay_pieces(_router_stream(), first, iterator, lambda exc: "failed", stream.relayed)
    assert next(pieces) == [first]
    assert reads._chunks  # the second read is still to come


def test_read_by_read_what_changes_or_is_not_plain_is_handed_out_decoded() -> None:
    body = sse_body(
        ("message_start", START),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        ("content_block_delta", ' {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", '
                                '"text": "spaced"}}'),
        ("content_block_delta", '{"type": "content_block_stop", "index": 0}'),  # named one thing, typed another
        ("content_block_delta", '[1, 2]'),  # not an object: dropped, as the event-by-event relay drops it
        ("odd_event", '{"type": "odd_event", "n": 1}'),
        ("message_stop", '{"type": "message_stop"}'))
    stream, _first, _iterator = _stream_of([body])
    (parts,) = list(stream.relayed(lambda event: None))
    assert [type(part) for part in parts] == [bytes, dict, Framed, Framed, Framed]
    assert parts[0] == sse_body(("content_block_start", '{"type":"content_block_start","index":0,'
                                                        '"content_block":{"type":"text","text":""}}'))
    assert [part["type"] for part in parts[1:]] == ["content_block_delta", "content_block_stop", "odd_event",
                                                    "message_stop"]
    assert b"".join(by_reads([body])[0]) == b"".join(by_events([body])[0])


def test_read_by_read_line_by_line_events_are_relayed_alike() -> None:
    body = BODY.replace(b"\n", b"\r\n")
    for chunks in ([body], [body[:300], body[300:]], [body[:7], body[7:]]):
        pieces, result = by_reads(chunks)
        frames, expected = by_events(chunks)
        assert b"".join(pieces) == b"".join(frames) and result.message == expected.message


def test_read_by_read_an_error_event_ends_the_stream_after_what_came_before_it() -> None:
    error = '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    events = BODY.split(b"\n\n")[:-1]
    broken = b"\n\n".join(events[:5]) + b"\n\n" + sse_body(("error", error))
    for chunks in ([broken], [broken[:200], broken[200:]]):
        pieces, result = by_reads(chunks)
        frames, expected = by_events(chunks)
        assert b"".join(pieces) == b"".join(frames)
        assert pieces[-1].startswith(b"event: error\n") and b"content_block_delta" in pieces[-2]
        assert result.incomplete and result.error == expected.error
        assert result.error["type"] == "overloaded_error"
        assert result.message == expected.message and result.message["content"][0]["text"]


def test_read_by_read_a_client_gone_leaves_the_stream_incomplete() -> None:
    from inference.streaming import relay_pieces

    at = BODY.index(b"event: content_block_stop")
    stream, first, iterator = _stream_of([BODY[:at], BODY[at:]])
    result = _router_stream()
    closed = []
    result._close = lambda: closed.append(True)
    pieces = relay_pieces(result, first, iterator, lambda exc: "failed", stream.relayed)
    next(pieces)
    pieces.close()
    assert result.incomplete and closed
    assert result.message["content"][0]["text"]  # what was handed out is folded


def test_the_fold_keeps_the_events_it_folds_as_they_are() -> None:
    """A relay may write an event after folding those that arrived with it: folding changes none of them."""
    from inference.streaming import Fold

    start = {"type": "message_start", "message": {"id": "m", "content": [{"type": "text", "text": "a"}]}}
    block = {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": "",
                                                                         "citations": []}}
    events = [start, block,
              {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "b"}},
              {"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": {"n": 1}}},
              {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "c"}}]
    before = json.dumps(events)
    fold = Fold()
    for event in events:
        fold.add(event)
    assert fold.flush()["content"] == [{"type": "text", "text": "ab"},
                                       {"type": "text", "text": "c", "citations": [{"n": 1}]}]
    assert json.dumps(events) == before


def _gateway_stream(monkeypatch: Any, keys: tuple[str, ...], log: list[Any], *, recorded: bool = True) -> Any:
    """gateway_stream over the simulator with the records stubbed: `log` gets ("recorded", status) when the call is
    recorded and ("durable",) when its records are waited for."""
    import types as pytypes

    from inference import gateway
    from inference.records import RecordsUnavailable
    from inference.router import route_stream
    from tests.inference.routing import ask, targets

    admitted = pytypes.SimpleNamespace(message_request=ask(), targets=targets(*keys), admissions={},
                                       call=pytypes.SimpleNamespace(tenant=None),
                                       entry=pytypes.SimpleNamespace(model_id="claude-sonnet-5-5"))

    def record(admitted: Any, **kwargs: Any) -> Any:
        log.append(("recorded", kwargs["status"]))
        if not recorded:
            raise RecordsUnavailable()
        return object(), object()

    monkeypatch.setattr(gateway, "_start", lambda admitted, router, background: route_stream(
        admitted.message_request, admitted.targets))
    monkeypatch.setattr(gateway, "_record", record)
    monkeypatch.setattr(gateway, "record_durable", lambda record, ticket: log.append(("durable",)))
    return gateway.gateway_stream(admitted, background=True)  # type: ignore[arg-type]


def test_the_v1_pieces_hold_message_stop_until_the_records_are_durable(sim: Any, monkeypatch: Any) -> None:
    from config.http import sse

    for keys in (("anthropic",), ("bedrock:us-east-1",)):  # relayed read by read; a stream of decoded events
        log: list[Any] = []
        written = []
        for piece in sse(_gateway_stream(monkeypatch, keys, log), first_alone=False):
            written.append((piece, list(log)))
        events = events_of(b"".join(piece for piece, _ in written))
        assert events[0]["type"] == "message_start" and events[0]["message"]["model"] == "claude-sonnet-5-5"
        assert [event["type"] for event in events[-2:]] == ["message_delta", "message_stop"]
        assert all(not seen for _piece, seen in written[:-1])  # nothing recorded while the answer streams
        stop = b'{"type": "message_stop"}' if keys[0] == "anthropic" else b'{"type":"message_stop"}'  # its own bytes
        last, seen = written[-1]  # message_stop, with the events of its read unless they were the first piece
        assert last.endswith(b"event: message_stop\ndata: " + stop + b"\n\n")
        assert seen == [("recorded", "success"), ("durable",)]


def test_the_v1_pieces_end_with_an_error_when_the_records_cannot_be_kept(sim: Any, monkeypatch: Any) -> None:
    from config.http import sse

    log: list[Any] = []
    written = b"".join(sse(_gateway_stream(monkeypatch, ("anthropic",), log, recorded=False), first_alone=False))
    frames = written.split(b"\n\n")
    assert frames[-1] == b"" and frames[-2].startswith(b"event: error\ndata: ")
    assert json.loads(frames[-2].partition(b"data: ")[2])["error"]["type"] == "api_error"
    assert events_of(b"\n\n".join(frames[:-2]) + b"\n\n")[-1]["type"] == "message_delta"
    assert log == [("recorded", "success")]


def test_the_v1_pieces_of_a_client_gone_are_recorded_incomplete(sim: Any, monkeypatch: Any) -> None:
    from config.http import sse

    log: list[Any] = []
    pieces = sse(_gateway_stream(monkeypatch, ("anthropic",), log), first_alone=False)
    assert b"message_start" in next(pieces)
    pieces.close()
    assert log == [("recorded", "incomplete")]


def test_the_v1_pieces_write_message_stop_with_its_read_unless_that_was_the_first_piece(monkeypatch: Any) -> None:
    import functools

    from config.http import sse, sse_frame
    from inference import gateway
    from inference.streaming import relay, relay_pieces

    events = [frame + b"\n\n" for frame in BODY.split(b"\n\n") if frame]
    stop = events[-1]
    head = sse_frame(json.loads(START)) + events[1]  # message_start framed again (its model set), then its read's
    first_read = b"".join(events[:2])
    for reads, expected in (
            ([first_read, b"".join(events[2:])], [head, b"".join(events[3:])]),
            ([BODY], [head + b"".join(events[3:-1]), stop]),  # the first piece never waits for the records
            ([first_read, b"".join(events[2:-1]), stop], [head, b"".join(events[3:-1]), stop]),
            ([first_read, b"".join(events[2:-2]), events[-2] + stop + events[-2]],  # more after message_stop
             [head, b"".join(events[3:-2]), events[-2] + events[-2] + stop]),
            ([first_read, b"".join(events[2:-1]), stop, events[-2]],  # more after message_stop, in a read of its own
             [head, b"".join(events[3:-1]), events[-2] + stop])):
        stream, first, iterator = _stream_of(reads)
        result = _router_stream()
        result.relays = (functools.partial(relay, first=first, rest=iterator, on_failure=lambda exc: "failed"),
                         functools.partial(relay_pieces, first=first, rest=iterator, on_failure=lambda exc: "failed",
                                           relayed=stream.relayed))
        log: list[Any] = []
        monkeypatch.setattr(gateway, "_start", lambda admitted, router, background, result=result: result)
        monkeypatch.setattr(gateway, "_record", lambda admitted, log=log, **kwargs: log.append("recorded") or (1, None))
        admitted = types.SimpleNamespace(entry=types.SimpleNamespace(model_id="x"))
        written = []
        for piece in sse(gateway.gateway_stream(admitted, background=True), first_alone=False):  # type: ignore[arg-type]
            written.append((piece, list(log)))
        assert [piece for piece, _ in written] == expected, reads
        assert [seen for _, seen in written] == [[]] * (len(expected) - 1) + [["recorded"]]

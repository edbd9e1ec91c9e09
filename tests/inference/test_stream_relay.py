"""Relaying a provider's stream events (config.http.sse over the direct stream, inference/providers/anthropic_api.py):
an event Atrium does not change is written with the JSON it arrived with; one it changes, or one that did not
arrive as one line of plain JSON, is encoded again."""

from __future__ import annotations

import json
from typing import Any

from config.http import Framed, sse
from inference.providers.anthropic_api import AnthropicClient
from inference.providers.anthropic_stream import DirectStream
from tests.inference.test_sse_parse import Reads

CLIENT = AnthropicClient(api_key="sk-ant-x", base_url="http://127.0.0.1:9", timeout=5)


def events_of(body: bytes, *, framed: bool = True) -> list[Any]:
    stream = DirectStream(CLIENT, Reads([body]), b"{}")
    stream.framed = framed
    return list(stream)


def frames(events: list[Any]) -> list[bytes]:
    return [frame for frame in sse(iter(events))]


DELTA = '{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "h\u00e9 \\u2603"}}'


def test_an_unchanged_event_is_written_with_the_json_it_arrived_with() -> None:
    body = b"event: content_block_delta\ndata: " + DELTA.encode() + b"\n\n"
    (event,) = events_of(body)
    assert event == json.loads(DELTA) and isinstance(event, dict)
    assert frames([event]) == [b"event: content_block_delta\ndata: " + DELTA.encode() + b"\n\n"]


def test_a_changed_event_is_encoded_again() -> None:
    body = b'event: message_start\ndata: {"type": "message_start", "message": {"model": "x", "content": []}}\n\n'
    (event,) = events_of(body)
    changed = {**event, "message": {**event["message"], "model": "claude-sonnet-5-5"}}  # as the gateway does
    assert frames([changed]) == [b'event: message_start\ndata: {"type":"message_start","message":'
                                 b'{"model":"claude-sonnet-5-5","content":[]}}\n\n']


def test_an_event_not_on_one_plain_line_is_encoded_again() -> None:
    compact = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    for body in (b'event: content_block_stop\ndata: {"type": "content_block_stop",\ndata:  "index": 0}\n\n',
                 b'event: content_block_stop\ndata: {"type": "content_block_stop",\r "index": 0}\n\n',
                 b'event: content_block_stop\ndata:  {"type": "content_block_stop", "index": 0} \n\n',
                 b'event: content_block_stop\ndata: \xef\xbb\xbf{"type": "content_block_stop", "index": 0}\n\n'):
        (event,) = events_of(body)
        assert type(event) is dict and event == {"type": "content_block_stop", "index": 0}
        assert frames([event]) == [compact]


def test_events_folded_into_a_message_are_plain_dicts() -> None:
    body = b"event: content_block_delta\ndata: " + DELTA.encode() + b"\n\n"
    assert [type(event) for event in events_of(body, framed=False)] == [dict]


def test_only_objects_carry_their_bytes() -> None:
    assert events_of(b"event: odd\ndata: [1, 2]\n\n") == [[1, 2]]
    assert type(events_of(b'event: odd\ndata: {"type": "odd"}\n\n')[0]) is Framed
    assert type(events_of(b'event: odd\r\ndata: {"type": "odd"}\r\n\r\n')[0]) is Framed  # line ends dropped


def test_the_frames_read_back_as_the_events() -> None:
    body = b"".join(b"event: e\ndata: " + json.dumps(event).encode() + b"\n\n" for event in (
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"}))
    events = events_of(body)
    written = b"".join(frames(events))
    assert events_of(written) == events
    assert [line for line in written.split(b"\n") if line.startswith(b"event: ")] == [
        b"event: content_block_start", b"event: content_block_delta", b"event: message_delta", b"event: message_stop"]


def test_a_routed_stream_relays_the_providers_bytes(sim: Any) -> None:
    from inference.router import route_stream
    from tests.inference.routing import ask, targets

    stream = route_stream(ask(), targets("anthropic"))
    events = list(stream)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert all(type(event) is Framed for event in events[1:])  # the first was read before the stream was chosen
    for event in events[1:]:
        assert json.loads(event.data) == event and event.data.startswith(b'{"type": ')  # the simulator's spacing
    assert type(stream.message["content"][0]) is dict


class Ready:
    """Events with a `ready()` that says yes while `arrived` events are waiting; records what was taken when."""

    def __init__(self, events: list[dict[str, Any]], arrived: list[int], fail_at: int | None = None) -> None:
        self.events, self.arrived, self.fail_at = events, arrived, fail_at
        self.taken = 0
        self.closed = False

    def ready(self) -> bool:
        return self.taken in self.arrived

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.taken == self.fail_at:
            raise RuntimeError("the gateway failed")
        if self.taken >= len(self.events):
            raise StopIteration
        self.taken += 1
        return self.events[self.taken - 1]

    def close(self) -> None:
        self.closed = True


EVENTS = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": str(i)}}
          for i in range(6)]


def frame(event: dict[str, Any]) -> bytes:
    return b"event: content_block_delta\ndata: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def test_events_that_arrived_together_are_written_together() -> None:
    source = Ready(EVENTS, arrived=[2, 3, 5])  # after the 2nd: the 3rd and 4th are there; after the 5th: the 6th
    written = []
    for piece in sse(source):
        written.append((piece, source.taken))
    assert written == [(frame(EVENTS[0]), 1), (frame(EVENTS[1]) + frame(EVENTS[2]) + frame(EVENTS[3]), 4),
                       (frame(EVENTS[4]) + frame(EVENTS[5]), 6)]
    assert source.closed


def test_the_first_event_is_written_alone() -> None:
    # The web chat writes its atrium.question right after the first piece (message_start): nothing may join it.
    source = Ready(EVENTS, arrived=[0, 1, 2, 3, 4, 5])
    pieces = sse(source)
    assert (next(pieces), source.taken) == (frame(EVENTS[0]), 1)
    assert next(pieces) == b"".join(frame(event) for event in EVENTS[1:])


def test_without_first_alone_the_first_event_joins_those_that_arrived_with_it() -> None:
    # /v1/messages writes nothing of its own between the events: message_start goes out with what came with it.
    source = Ready(EVENTS, arrived=[1, 2, 4])
    assert list(sse(source, first_alone=False)) == [frame(EVENTS[0]) + frame(EVENTS[1]) + frame(EVENTS[2]),
                                                    frame(EVENTS[3]) + frame(EVENTS[4]), frame(EVENTS[5])]
    assert source.closed


def test_the_v1_stream_is_written_without_its_first_event_alone(monkeypatch: Any) -> None:
    from django.test import RequestFactory

    from inference import api_v1

    class Admitted:
        clamp_headers: dict[str, str] = {}

    written: list[bool] = []
    monkeypatch.setattr(api_v1, "_authenticate", lambda request: (None, api_v1.AuthInfo(method="api_key", tenant="t")))
    monkeypatch.setattr(api_v1, "Call", lambda **kwargs: None)
    monkeypatch.setattr(api_v1, "gateway_admit", lambda call: Admitted())
    monkeypatch.setattr(api_v1, "gateway_stream", lambda admitted, background: iter(EVENTS))
    monkeypatch.setattr(api_v1, "sse", lambda events, first_alone=True: written.append(first_alone) or iter(()))
    monkeypatch.setattr(api_v1.connection, "tenant", None, raising=False)
    request = RequestFactory().post("/v1/messages", data=json.dumps({"stream": True}),
                                    content_type="application/json")
    response = api_v1.messages(request)
    assert response.status_code == 200 and written == [False]


def test_without_ready_each_event_is_written_alone() -> None:
    assert list(sse(iter(EVENTS))) == [frame(event) for event in EVENTS]


def test_what_was_taken_goes_out_before_a_failure() -> None:
    source = Ready(EVENTS, arrived=[2, 3, 4], fail_at=4)
    frames_out = sse(source)
    assert next(frames_out) == frame(EVENTS[0])
    assert next(frames_out) == frame(EVENTS[1]) + frame(EVENTS[2]) + frame(EVENTS[3])
    try:
        next(frames_out)
        raise AssertionError("the failure was not raised")
    except RuntimeError:
        pass
    assert source.closed


def test_the_stream_is_ready_only_for_events_that_will_not_wait() -> None:
    from inference.types import RouterStream

    stream = RouterStream(events=iter(()), provider="anthropic", region="", model_id="m", attempts=[], started_at=0)
    assert not stream.ready()  # no probe: never
    for upcoming, expected in (
            (None, False),
            ((b"content_block_delta", b'{"type": "content_block_delta", "index": 0}'), True),
            ((b"content_block_start", b'{"type":"content_block_start","index":0}'), True),
            ((b"content_block_stop", b'{"type": "content_block_stop", "index": 0}'), True),
            ((b"message_delta", b'{"type": "message_delta", "delta": {}}'), True),
            ((b"message_stop", b'{"type": "message_stop"}'), False),  # the gateway may hold it: it waits
            ((b"error", b'{"type": "error"}'), False),
            ((b"content_block_delta", b'{"index": 0, "type": "content_block_delta"}'), False),  # type not first
            ((b"content_block_delta", b'{"type": "message_stop"}'), False)):  # named one thing, typed another
        stream.upstream_ready = lambda upcoming=upcoming: upcoming
        assert stream.ready() is expected, upcoming


def test_a_routed_stream_is_written_in_fewer_pieces_with_message_stop_alone(sim: Any) -> None:
    from inference.router import route_stream
    from tests.inference.routing import ask, targets

    stream = route_stream(ask(), targets("anthropic"))
    pieces = []

    answers: list[bool] = []

    class Gateway:  # the gateway's part: ready() as gateway_stream passes it, message_stop held to the end
        @staticmethod
        def ready() -> bool:
            answer = stream.ready()
            answers.append(answer)
            return answer

        def __iter__(self) -> Any:
            held = None
            for event in stream:
                if event["type"] == "message_stop":
                    held = event
                    continue
                yield event
            yield held

    for piece in sse(Gateway()):  # type: ignore[arg-type]
        pieces.append(piece)
    written = b"".join(pieces)
    events = events_of(written)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    # How many events arrive together is the machine's timing (the simulator flushes each one), so the pieces are
    # checked against the stream's own answers: a "ready" starts a piece of several events (one answer) and each
    # further "ready" adds the next event to it; a piece never holds an event the stream had not said was there.
    sizes = [len(events_of(piece)) for piece in pieces]
    assert sum(sizes) == len(events)
    several = sum(1 for size in sizes if size > 1)
    assert len(pieces) == len(events) - (answers.count(True) - several)
    assert several or not any(answers)  # the stream said an event had arrived: it went out with the one before
    assert events_of(pieces[0]) == events[:1]  # the first event alone (the web chat writes right after it)
    assert pieces[-1] == b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    assert stream.message["stop_reason"] and not stream.incomplete


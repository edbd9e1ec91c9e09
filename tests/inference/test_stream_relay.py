"""Relaying a provider's stream events (config.http.sse over the direct stream, inference/providers/anthropic_api.py):
an event Atrium does not change is written with the JSON it arrived with; one it changes, or one that did not
arrive as one line of plain JSON, is encoded again."""

from __future__ import annotations

import json
from typing import Any

from config.http import Framed, sse
from inference.providers.anthropic_api import AnthropicClient, DirectStream
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

"""A non-streaming call's fold of the direct stream (DirectStream.fold_rest, inference/providers/anthropic_fold.py)
gives what reading the stream event by event and folding each event with `accumulate` gives (the reference below:
the line-by-line SSE reader of test_sse_parse, each event decoded as the stream decodes it): the same Message, to
the byte of its JSON (key order included), or the same exception; after the same reads, with the connection closed
or given back alike. For the answers providers send (text, tool use, thinking, several blocks, pings, compact and
spaced JSON) and odd ones (errors half way, broken or truncated streams, escapes and surrogates split across
deltas, invalid JSON or UTF-8, deltas out of place), however the answer is split into reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
import urllib3

from inference.providers.anthropic_stream import DirectStream
from inference.streaming import accumulate, collect
from tests.inference.test_sse_parse import CLIENT, Reads, line_reader
from tests.inference.test_sse_parse import splits as sse_splits


def reference(chunks: list[bytes | Exception]) -> Any:
    """The Message's JSON folded event by event with accumulate, or the exception (its type and text)."""
    decoder = DirectStream(CLIENT, Reads([]), b"{}")
    message: dict[str, Any] = {}
    try:
        for read in line_reader(chunks):
            if isinstance(read, Exception):
                raise CLIENT.transport_error(read, b"{}")
            for name, data in read:
                event = decoder._decoded(name, data)
                if isinstance(event, dict):
                    accumulate(message, event)
        if message.get("stop_reason") is None:
            raise anthropic.APIConnectionError(request=None,  # type: ignore[arg-type]
                                               message="the provider's stream ended before message_stop")
    except Exception as exc:
        return type(exc), str(exc)
    return json.dumps(message, ensure_ascii=False)  # lone surrogates stay themselves, not a pair's escapes


def folded(chunks: list[bytes | Exception], *, fold_rest: bool = True) -> tuple[Any, tuple[int, int, int]]:
    """What route() gets: the first event handed out, then the rest folded by fold_rest (or, without, by iterating
    the stream); the Message's JSON or the exception, and the answer's reads, closes and releases."""
    answer = Reads(chunks)
    stream = DirectStream(CLIENT, answer, b"{}")
    try:
        iterator = iter(stream)
        try:
            first = next(iterator)
        except StopIteration:
            raise anthropic.APIConnectionError(request=None, message="empty stream") from None  # type: ignore[arg-type]
        outcome: Any = json.dumps(collect(first, iterator, stream.fold_rest if fold_rest else None),
                                  ensure_ascii=False)
    except Exception as exc:
        outcome = type(exc), str(exc)
    stream.close()  # as route() does on a failure (and the stream did itself otherwise)
    return outcome, (answer.reads, answer.closed, answer.released)


def ev(name: str, data: Any, *, compact: bool = False) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":") if compact else None)
    return f"event: {name}\ndata: {text}\n\n".encode()


def start(**extra: Any) -> dict[str, Any]:
    return {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 18, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": 1}, **extra}}


def block(index: int, **content: Any) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content}


def delta(index: Any, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


def text(index: Any, value: Any) -> dict[str, Any]:
    return delta(index, "text_delta", text=value)


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


END = [{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 38, "cache_read_input_tokens": None}}, {"type": "message_stop"}]


def body(events: list[Any], *, compact: bool = False) -> bytes:
    """An SSE body: each event named as its type (an (name, data) pair as it is; bytes as they are)."""
    out = b""
    for event in events:
        if isinstance(event, bytes):
            out += event
        elif isinstance(event, tuple):
            out += ev(event[0], event[1], compact=compact)
        else:
            out += ev(event["type"], event, compact=compact)
    return out


TEXT = [start(), block(0, type="text", text=""), {"type": "ping"},
        *[text(0, piece) for piece in ("## One short ", "sentence benchmarks\n\nSimulated ", "answer from ",
                                       "anthropic. You ", "asked: \"Give\" me ", "one short sentence ", "about it.")],
        stop(0), *END]
BODIES: dict[str, bytes] = {
    "text": body(TEXT),
    "text_compact": body(TEXT, compact=True),
    "text_non_ascii": body([(event["type"], json.dumps(event, ensure_ascii=False)) for event in
                            [*TEXT[:3], text(0, "h\u00e9llo \u2603 \U0001f600"), text(0, "\u00e9"), *TEXT[3:]]]),
    "escapes": body([start(), block(0, type="text", text="pre:"),
                     *[text(0, piece) for piece in ("a\\b", 'q"', "\t\u0001", "\u2028\u00e9", "/", "\x7f", "")],
                     stop(0), *END]),
    "surrogates_split_across_deltas": body([start(), block(0, type="text", text=""), text(0, "x"),
                                            ("content_block_delta", '{"type": "content_block_delta", "index": 0, '
                                             '"delta": {"type": "text_delta", "text": "a\\ud83d"}}'),
                                            ("content_block_delta", '{"type": "content_block_delta", "index": 0, '
                                             '"delta": {"type": "text_delta", "text": "\\uDE00b"}}'),
                                            text(0, "\U0001f600"), stop(0), *END]),
    "tool_use": body([start(), block(0, type="text", text=""), text(0, "Let me look."), stop(0),
                      block(1, type="tool_use", id="toolu_1", name="get_weather", input={}),
                      delta(1, "input_json_delta", partial_json=""), delta(1, "input_json_delta", partial_json='{"ci'),
                      delta(1, "input_json_delta", partial_json='ty": "Par'),
                      delta(1, "input_json_delta", partial_json='is"}'), stop(1),
                      {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}},
                      {"type": "message_stop"}], compact=True),
    "thinking": body([start(), block(0, type="thinking", thinking="", signature=""),
                      *[delta(0, "thinking_delta", thinking=f"step {i}. ") for i in range(4)],
                      delta(0, "signature_delta", signature="EqQB"), delta(0, "signature_delta", signature="Kk=="),
                      stop(0), block(1, type="text", text=""), text(1, "Answer"), text(1, "."), stop(1), *END]),
    "several_blocks_interleaved": body([start(), block(0, type="text", text="a"), block(1, type="text", text="b"),
                                        text(0, "1"), text(0, "2"), text(1, "3"), text(1, "4"), text(0, "5"),
                                        stop(0), block(2, type="text", text=""), text(2, "6"), text(2, "7"),
                                        stop(1), stop(2), *END]),
    "citations": body([start(), block(0, type="text", text="", citations=[]), text(0, "A"),
                       delta(0, "citations_delta", citation={"type": "char_location", "cited_text": "q"}),
                       text(0, "B"), text(0, "C"), stop(0), *END]),
    "pings_everywhere": body([start(), {"type": "ping"}, block(0, type="text", text=""), {"type": "ping"},
                              text(0, "a"), {"type": "ping"}, text(0, "b"), ("ping", "not json"), text(0, "c"),
                              stop(0), {"type": "ping"}, *END, {"type": "ping"}]),
    "ping_first": body([{"type": "ping"}, *TEXT]),
    "error_half_way": body([*TEXT[:5], ("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                           "message": "Overloaded"}}), *TEXT[5:]]),
    "error_not_json": body([*TEXT[:5], ("error", "oops"), *TEXT[5:]]),
    "error_named_with_known_data": body([*TEXT[:4], ("error", {"type": "message_stop"}), *TEXT[4:]]),
    "no_message_stop": body(TEXT[:-2]),
    "stops_half_way": body(TEXT[:6]),
    "unterminated_last_event": body(TEXT) + b'event: ping\ndata: {"type": "ping"}',
    "delta_bad_json": body([*TEXT[:4], ("content_block_delta", '{"type": "content_block_delta", "index": 0, '
                                                               '"delta": {"type": "text_delta", "text": "a}}'),
                            *TEXT[4:]]),
    "delta_extra_data": body([*TEXT[:4], ("content_block_delta", json.dumps(text(0, "x")) + " {}"), *TEXT[4:]]),
    "delta_trailing_space": body([*TEXT[:4], ("content_block_delta", json.dumps(text(0, "x")) + " "), *TEXT[4:]]),
    "delta_bom": body(TEXT[:4]) + b"event: content_block_delta\ndata: \xef\xbb\xbf" + json.dumps(text(0, "x")).encode()
    + b"\n\n" + body(TEXT[4:]),
    "delta_raw_control_character": body([*TEXT[:4], ("content_block_delta", json.dumps(text(0, "QQ")).replace(
        "QQ", "\x01")), *TEXT[4:]]),
    "delta_raw_tab": body([*TEXT[:4], ("content_block_delta", json.dumps(text(0, "QQ")).replace("QQ", "a\tb")),
                           *TEXT[4:]]),
    "delta_raw_unit_separator": body([*TEXT[:4], text(0, "a"), ("content_block_delta", json.dumps(text(0, "QQ"))
                                      .replace("QQ", "\x1f")), *TEXT[4:]]),
    "delta_invalid_utf8": body(TEXT[:4]) + ev("content_block_delta", json.dumps(text(0, "AB"))).replace(
        b"AB", b"A\xff") + body(TEXT[4:]),
    "delta_lone_surrogate_utf8": body(TEXT[:4]) + ev("content_block_delta", json.dumps(text(0, "AB"))).replace(
        b"AB", b"A\xed\xa0\x80") + body(TEXT[4:]),
    "delta_bad_escape": body([*TEXT[:4], ("content_block_delta", json.dumps(text(0, "QQ")).replace("QQ", "\\x")),
                              *TEXT[4:]]),
    "delta_short_unicode_escape": body([*TEXT[:4], text(0, "a"), ("content_block_delta", json.dumps(text(0, "QQ"))
                                        .replace("QQ", "\\u12")), text(0, "34"), *TEXT[4:]]),
    "delta_ends_with_a_backslash": body([*TEXT[:4], ("content_block_delta", json.dumps(text(0, "QQ")).replace(
        "QQ", "\\")), text(0, "nb"), *TEXT[4:]]),
    "delta_ends_with_escaped_quote": body([*TEXT[:4], ("content_block_delta", json.dumps(text(0, "QQ")).replace(
        'QQ"}}', 'QQ\\"}}')), *TEXT[4:]]),
    "index_forms": body([start(), block(0, type="text", text=""), block(1, type="text", text=""),
                         ("content_block_delta", json.dumps(text(0, "x")).replace('"index": 0', '"index": 01')),
                         ("content_block_delta", json.dumps(text(0, "y")).replace('"index": 0', '"index": -0')),
                         ("content_block_delta", json.dumps(text(0, "z")).replace('"index": 0', '"index": 0.0')),
                         ("content_block_delta", json.dumps(text(0, "w")).replace('"index": 0', '"index": 1e0')),
                         text(1, "v"), text(-1, "u"), text(7, "t"), text(12345678901, "s"), text("0", "r"),
                         text(0, "q"), *END]),
    "deltas_before_their_block": body([start(), text(0, "lost"), text(0, "lost too"), block(0, type="text", text=""),
                                       text(3, "lost"), text(0, "kept"), *END]),
    "block_text_not_a_string": body([start(), block(0, type="text", text=None), text(0, "a"), text(0, "b"), *END]),
    "block_without_text": body([start(), block(0, type="tool_use", id="t", name="n", input={}), text(0, "odd"),
                                text(0, "er"), stop(0), *END]),
    "block_not_a_dict": body([start(content=["x"]), text(0, "a"), text(0, "b"), *END]),
    "content_not_a_list": body([start(content="abc"), text(0, "a"), *END]),
    "no_content": body([{"type": "message_start", "message": {"id": "m"}}, text(0, "a"), text(0, "b"), *END]),
    "mixed_fields_one_block": body([start(), block(0, type="text", text=""), text(0, "t"),
                                    delta(0, "thinking_delta", thinking="h"), text(0, "u"), text(0, "v"), *END]),
    "text_delta_other_forms": body([start(), block(0, type="text", text=""),
                                    ("content_block_delta", '{"index": 0, "type": "content_block_delta", '
                                     '"delta": {"type": "text_delta", "text": "reordered"}}'),
                                    ("content_block_delta", '{"type":"content_block_delta","index":0,'
                                     '"delta":{"type":"text_delta","text":"extra","x":1}}'),
                                    ("content_block_delta", '{"type":"content_block_delta","index":0,'
                                     '"delta":{"type":"text_delta","text":"dup","text":"licate"}}'),
                                    ("content_block_delta", '{"type": "content_block_delta","index":0, '
                                     '"delta": {"type":"text_delta", "text":"mixed spaces"}}'),
                                    ("other_name", json.dumps(text(0, "named otherwise"))),
                                    ("content_block_delta", json.dumps(text(0, 5))),
                                    text(0, "plain"), *END]),
    "message_delta_updates": body([start(), block(0, type="text", text=""), text(0, "a"),
                                   {"type": "message_delta", "delta": {"stop_sequence": "X"},
                                    "usage": {"output_tokens": 3}}, text(0, "b"),
                                   {"type": "message_delta", "delta": {"stop_reason": "stop_sequence"},
                                    "usage": {"output_tokens": 7, "input_tokens": None}}, stop(0),
                                   {"type": "message_stop"}]),
    "second_message_start": body([start(), block(0, type="text", text=""), text(0, "a"), start(id="msg_2"),
                                  block(0, type="text", text=""), text(0, "b"), *END]),
    "odd_values": body([start(), ("content_block_start", "[1, 2]"), ("x", "7"), ("x", "null"), ("x", '"s"'),
                        ("x", "NaN"), ("x", "1e999"), block(0, type="text", text=""), text(0, "a"), *END]),
    "stop_events_known_and_not": body([start(), block(0, type="tool_use", id="t", name="n", input={}),
                                       delta(0, "input_json_delta", partial_json='{"a": 1}'),
                                       ("content_block_stop", '{"type":"content_block_stop","index":0}'),
                                       block(1, type="tool_use", id="u", name="n", input={}),
                                       delta(1, "input_json_delta", partial_json='{"b": '),
                                       ("content_block_stop", '{"type": "content_block_stop", "index": 1 }'),
                                       *END]),
    "comments_and_ids": body(TEXT[:3]) + b": keep-alive\n\nid: 7\n" + body(TEXT[3:6]) + b"\n\n\n" + body(TEXT[6:]),
    "multi_line_data": body(TEXT[:3]) + b'event: content_block_delta\ndata: {"type": "content_block_delta",\n'
    b'data: "index": 0, "delta": {"type": "text_delta", "text": "two lines"}}\n\n' + body(TEXT[3:]),
    "crlf_late": body(TEXT[:5]) + body(TEXT[5:]).replace(b"\n", b"\r\n"),
}


def splits(data: bytes) -> Iterator[list[bytes]]:
    return sse_splits(data, step=11, seconds=(1, 2, 17, 160), first_alone=True)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_the_fold_is_the_event_by_event_fold_at_every_split(name: str) -> None:
    data = BODIES[name]
    expected = reference([data])
    for chunks in splits(data):
        outcome, connection = folded(list(chunks))
        assert outcome == expected, chunks
        assert reference(list(chunks)) == expected
        assert (outcome, connection) == folded(list(chunks), fold_rest=False), chunks  # same reads, same closes


def test_the_bodies_fold_as_meant() -> None:
    # The cases are what their names say: the common ones fold, the broken ones raise.
    outcomes = {name: reference([data]) for name, data in BODIES.items()}
    text_message = json.loads(outcomes["text"])
    assert text_message["content"] == [{"type": "text", "text": "## One short sentence benchmarks\n\nSimulated answer "
                                        "from anthropic. You asked: \"Give\" me one short sentence about it."}]
    assert list(text_message) == ["id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"]
    assert outcomes["text_compact"] == outcomes["text"]
    assert '"text": "xa\ud83d\ude00b\U0001f600"' in outcomes["surrogates_split_across_deltas"]  # two characters,
    # as each delta is decoded on its own, not the one character of the pair their escapes make together
    assert json.loads(outcomes["tool_use"])["content"][1]["input"] == {"city": "Paris"}
    for name in ("error_half_way", "error_not_json", "error_named_with_known_data"):
        assert outcomes[name][0] is anthropic.APIStatusError, name
    for name in ("no_message_stop", "stops_half_way"):
        assert outcomes[name][0] is anthropic.APIConnectionError, name
    for name in ("delta_bad_json", "delta_extra_data", "delta_raw_control_character", "delta_raw_tab",
                 "delta_raw_unit_separator", "delta_invalid_utf8", "delta_bad_escape", "delta_short_unicode_escape",
                 "delta_ends_with_a_backslash", "delta_ends_with_escaped_quote", "index_forms"):
        assert outcomes[name][0] in (json.JSONDecodeError, UnicodeDecodeError), name
    for name in ("block_text_not_a_string", "block_not_a_dict", "content_not_a_list"):
        assert isinstance(outcomes[name], tuple), name
    assert json.loads(outcomes["delta_bom"])["content"][0]["text"].startswith("## One short x")  # json.loads of bytes


@pytest.mark.parametrize("name", ["text", "tool_use", "thinking", "several_blocks_interleaved", "pings_everywhere"])
def test_a_connection_broken_at_any_read_fails_as_before(name: str) -> None:
    data = BODIES[name]
    broken = urllib3.exceptions.ProtocolError("Connection broken")
    for chunks in ([data[i:i + 40] for i in range(0, len(data), 40)], [piece + b"\n\n" for piece in
                                                                         data.split(b"\n\n")[:-1]]):
        for at in range(1, len(chunks)):
            reads: list[bytes | Exception] = [*chunks[:at], broken]
            outcome, connection = folded(reads)
            assert outcome == reference(reads)
            assert outcome[0] is anthropic.APIConnectionError
            assert (outcome, connection) == folded(reads, fold_rest=False)


def test_long_answers_fold_alike() -> None:
    # Runs of hundreds of deltas, split anywhere, in both forms, with a surrogate pair's escapes split in the middle.
    pieces = [text(0, f"w{i} \u00e9\\\"\n") for i in range(300)]
    for compact in (False, True):
        data = body([start(), block(0, type="text", text=""), *pieces[:150],
                     ("content_block_delta", '{"type": "content_block_delta", "index": 0, '
                      '"delta": {"type": "text_delta", "text": "\\ud83d"}}'),
                     ("content_block_delta", '{"type": "content_block_delta", "index": 0, '
                      '"delta": {"type": "text_delta", "text": "\\ude00"}}'), *pieces[150:], stop(0), *END],
                    compact=compact)
        expected = reference([data])
        assert isinstance(expected, str)
        for size in (1000, 4096, 65536):
            chunks = [data[i:i + size] for i in range(0, len(data), size)]
            assert folded(chunks) == folded(chunks, fold_rest=False)
            assert folded(chunks)[0] == expected


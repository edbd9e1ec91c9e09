"""Folding a stream into its Message for a non-streaming call (inference/streaming.py `collect`) gives what folding
it event by event with `accumulate` gave (the reference below, collect as it was): for the event sequences
providers send (text, tool use with its input JSON, thinking with its signature, citations, several blocks, an
error or an early end half way) and for odd ones (deltas before their block, out of range, of other types)."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from inference.streaming import accumulate, collect


def reference(first: Any, rest: Iterator[Any]) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if isinstance(first, dict):
        accumulate(message, first)
    for event in rest:
        if isinstance(event, dict):
            accumulate(message, event)
    if message.get("stop_reason") is None:
        raise anthropic.APIConnectionError(request=None,  # type: ignore[arg-type]
                                           message="the provider's stream ended before message_stop")
    return message


def start(**message: Any) -> dict[str, Any]:
    return {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                 "content": [], "model": "m", "stop_reason": None,
                                                 "usage": {"input_tokens": 5, "output_tokens": 1}, **message}}


def block(index: int, **content: Any) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content}


def delta(index: Any, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


END = [{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 12, "cache_read_input_tokens": None}}, {"type": "message_stop"}]

SEQUENCES: dict[str, list[Any]] = {
    "text": [start(), block(0, type="text", text=""), *[delta(0, "text_delta", text=f"w{i} ") for i in range(9)],
             stop(0), *END],
    "tool_use": [start(), block(0, type="text", text=""), delta(0, "text_delta", text="Let me look."), stop(0),
                 block(1, type="tool_use", id="toolu_1", name="get_weather", input={}),
                 delta(1, "input_json_delta", partial_json=""), delta(1, "input_json_delta", partial_json='{"ci'),
                 delta(1, "input_json_delta", partial_json='ty": "Par'),
                 delta(1, "input_json_delta", partial_json='is"}'), stop(1),
                 {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}},
                 {"type": "message_stop"}],
    "tool_use_bad_json": [start(), block(0, type="tool_use", id="t", name="n", input={}),
                          delta(0, "input_json_delta", partial_json='{"a": '), stop(0), *END],
    "tool_use_no_delta": [start(), block(0, type="tool_use", id="t", name="n", input={}), stop(0), *END],
    "thinking": [start(), block(0, type="thinking", thinking="", signature=""),
                 *[delta(0, "thinking_delta", thinking=f"step {i}. ") for i in range(5)],
                 delta(0, "signature_delta", signature="EqQB"), delta(0, "signature_delta", signature="Kkz=="),
                 stop(0), block(1, type="text", text=""), delta(1, "text_delta", text="Answer."), stop(1), *END],
    "redacted_thinking": [start(), block(0, type="redacted_thinking", data="abc"), stop(0), block(1, type="text",
                          text=""), delta(1, "text_delta", text="x"), stop(1), *END],
    "citations": [start(), block(0, type="text", text="", citations=[]), delta(0, "text_delta", text="A"),
                  delta(0, "citations_delta", citation={"type": "char_location", "cited_text": "q"}),
                  delta(0, "text_delta", text="B"), delta(0, "text_delta", text="C"), stop(0), *END],
    "interleaved_blocks": [start(), block(0, type="text", text="a"), block(1, type="text", text="b"),
                           delta(0, "text_delta", text="1"), delta(1, "text_delta", text="2"),
                           delta(0, "text_delta", text="3"), delta(0, "text_delta", text="4"),
                           delta(1, "text_delta", text="5"), stop(0), stop(1), *END],
    "mixed_fields_one_block": [start(), block(0, type="text", text=""), delta(0, "text_delta", text="t"),
                               delta(0, "thinking_delta", thinking="h"), delta(0, "text_delta", text="u"),
                               delta(0, "signature_delta", signature="s"), *END],
    "block_restarted": [start(), block(0, type="text", text=""), delta(0, "text_delta", text="old"),
                        block(0, type="text", text="new:"), delta(0, "text_delta", text="x"), *END],
    "second_message_start": [start(), block(0, type="text", text=""), delta(0, "text_delta", text="a"),
                             start(id="msg_2"), block(0, type="text", text=""), delta(0, "text_delta", text="b"),
                             *END],
    "deltas_before_their_block": [start(), delta(0, "text_delta", text="lost"), block(0, type="text", text=""),
                                  delta(3, "text_delta", text="lost too"), delta(0, "text_delta", text="kept"),
                                  *END],
    "no_message_start": [block(0, type="text", text=""), delta(0, "text_delta", text="x"), *END],
    "delta_without_content": [{"type": "message_start", "message": {"id": "m"}}, delta(0, "text_delta", text="x"),
                              *END],
    "content_not_a_list": [start(content="abc"), *END],
    "negative_index": [start(), block(0, type="text", text="a"), block(1, type="text", text="b"),
                       delta(-1, "text_delta", text="!"), delta(-2, "text_delta", text="?"), *END],
    "odd_indexes": [start(), block(0, type="text", text=""), delta("0", "text_delta", text="s"),
                    delta(0.0, "text_delta", text="f"), delta(True, "text_delta", text="b"),
                    delta(0, "text_delta", text="i"), *END],
    "missing_fields": [start(), block(0, type="text"), {"type": "content_block_delta", "delta": {"type": "text_delta"}},
                       {"type": "content_block_delta", "index": 0}, delta(0, "text_delta"),
                       delta(0, "text_delta", text="x"), *END],
    "block_without_text_field": [start(), block(0, type="tool_use", id="t", name="n", input={}),
                                 delta(0, "text_delta", text="odd"), delta(0, "text_delta", text="er"), *END],
    "block_padding": [start(), block(2, type="text", text=""), delta(2, "text_delta", text="x"),
                      delta(0, "text_delta", text="y"), delta(1, "text_delta", text="z"), *END],
    "unknown_events_and_deltas": [start(), "not a dict", None, {"type": "ping"}, {"no": "type"},
                                  block(0, type="text", text=""), delta(0, "weird_delta", text="w"),
                                  delta(0, "text_delta", text="x"), {"type": "future_event", "x": 1}, *END],
    "delta_not_a_dict": [start(), block(0, type="text", text=""), delta(0, "text_delta", text="a"),
                         {"type": "content_block_delta", "index": 0, "delta": None},
                         {"type": "content_block_delta", "index": 0, "delta": "x"}, delta(0, "text_delta", text="b"),
                         *END],
    "usage_and_stop_reason_updates": [start(), block(0, type="text", text=""), delta(0, "text_delta", text="a"),
                                      {"type": "message_delta", "delta": {"stop_sequence": "X"},
                                       "usage": {"output_tokens": 3}},
                                      delta(0, "text_delta", text="b"),
                                      {"type": "message_delta", "delta": {"stop_reason": "stop_sequence"},
                                       "usage": {"output_tokens": 7, "input_tokens": None}}],
    "no_stop_reason": [start(), block(0, type="text", text=""), delta(0, "text_delta", text="half")],
}
ERRORS: dict[str, list[Any]] = {
    "text_not_a_string": [start(), block(0, type="text", text=""), delta(0, "text_delta", text="a"),
                          delta(0, "text_delta", text=None), *END],
    "field_not_a_string": [start(), block(0, type="text", text=["x"]), delta(0, "text_delta", text="a"), *END],
    "block_not_a_dict": [start(content=["x"]), delta(0, "text_delta", text="a"), *END],
}


def outcome(fold: Any, events: list[Any]) -> Any:
    events = copy.deepcopy(events)
    try:
        return fold(events[0], iter(events[1:]))
    except Exception as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize("name", sorted(SEQUENCES) + sorted(ERRORS))
def test_the_message_is_the_one_accumulate_folds(name: str) -> None:
    events = SEQUENCES.get(name) or ERRORS[name]
    expected = outcome(reference, events)
    assert outcome(collect, events) == expected
    assert json.dumps(outcome(collect, events), default=repr) == json.dumps(expected, default=repr)  # key order too
    if name in ERRORS:
        assert isinstance(expected, tuple)


def broken(events: list[Any], after: int) -> Iterator[Any]:
    yield from events[:after]
    raise anthropic.APIConnectionError(request=None, message="Connection error.")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["text", "tool_use", "thinking", "interleaved_blocks"])
def test_a_stream_broken_half_way_raises_as_before(name: str) -> None:
    events = SEQUENCES[name]
    for after in range(1, len(events)):
        with pytest.raises(anthropic.APIConnectionError):
            collect(events[0], broken(copy.deepcopy(events[1:]), after))


def test_random_sequences_fold_as_accumulate_folds() -> None:
    rng = random.Random(20261207)
    pieces = ["", "a", "bc", "\u00e9", '{"k"', ": 1}", None, 7]
    kinds = ["text_delta", "thinking_delta", "input_json_delta", "signature_delta", "citations_delta", "other"]
    fields = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json",
              "signature_delta": "signature", "citations_delta": "citation", "other": "text"}
    for _ in range(3000):
        events: list[Any] = [start()]
        for _ in range(rng.randrange(1, 25)):
            roll = rng.random()
            index = rng.choice([0, 0, 0, 1, 1, 2, -1, 5])
            if roll < 0.15:
                events.append(block(max(index, 0), **rng.choice([{"type": "text", "text": ""},
                                                                 {"type": "thinking", "thinking": ""},
                                                                 {"type": "tool_use", "id": "t", "name": "n",
                                                                  "input": {}}, {"type": "text"}])))
            elif roll < 0.8:
                kind = rng.choice(kinds)
                value = rng.choice(pieces) if rng.random() < 0.9 else rng.choice(pieces[:6])
                events.append(delta(index, kind, **{fields[kind]: value}))
            elif roll < 0.9:
                events.append(stop(index))
            else:
                events.append(rng.choice(END))
        events.append(rng.choice([END[0], {"type": "message_stop"}]))
        assert outcome(collect, events) == outcome(reference, events), events


class ReferenceFold:
    """The fold relay had: accumulate at each event."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}

    def add(self, event: Any) -> None:
        if isinstance(event, dict):
            accumulate(self.message, event)

    def flush(self) -> dict[str, Any]:
        return self.message


def relayed(events: list[Any]) -> Any:
    from inference.streaming import relay
    from inference.types import RouterStream

    result = RouterStream(events=iter(()), provider="anthropic", region="", model_id="m", attempts=[], started_at=0)
    result._events = relay(result, events[0], iter(events[1:]), lambda exc: "failed")
    return result


@pytest.mark.parametrize("name", sorted(SEQUENCES) + sorted(ERRORS))
def test_a_relayed_streams_message_is_accumulates_whenever_it_is_read(name: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import inference.streaming

    events = SEQUENCES.get(name) or ERRORS[name]
    result = relayed(copy.deepcopy(events))
    with monkeypatch.context() as patch:
        patch.setattr(inference.streaming, "Fold", ReferenceFold)
        reference_result = relayed(copy.deepcopy(events))
        expected = []
        for event in reference_result:
            expected.append((copy.deepcopy(event), copy.deepcopy(reference_result.message)))
    got = []
    for event in result:
        got.append((copy.deepcopy(event), copy.deepcopy(result.message)))  # read half way: the deltas so far
    assert got == expected
    assert json.dumps(result.message) == json.dumps(reference_result.message)
    assert (result.incomplete, result.error) == (reference_result.incomplete, reference_result.error)


def test_a_relayed_stream_closed_half_way_keeps_what_came() -> None:
    events = SEQUENCES["thinking"]
    for after in range(1, len(events)):
        result = relayed(copy.deepcopy(events))
        iterator = iter(result)
        folded: dict[str, Any] = {}
        for _ in range(after):
            accumulate(folded, copy.deepcopy(next(iterator)))
        iterator.close()  # type: ignore[attr-defined]
        assert result.message == folded
        assert result.incomplete is (folded.get("stop_reason") is None)

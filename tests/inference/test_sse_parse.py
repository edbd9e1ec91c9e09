"""The direct stream's SSE reading (inference/providers/anthropic_api.py DirectStream._sse) against the line-by-line
reader it replaced (kept here as the reference): the same (event, data) pairs out of every input, however the
answer is split into reads (at every byte boundary, in one-byte reads, all at once)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from inference.providers.anthropic_api import AnthropicClient
from inference.providers.anthropic_stream import DirectStream, _events_of


class Reads:
    """An answer whose body arrives in the given reads (an exception among them is raised by that read); it
    counts the reads made and what was done with the connection."""

    status = 200
    connection = None

    def __init__(self, chunks: Sequence[bytes | Exception]) -> None:
        self._chunks = list(chunks)
        self.reads = 0
        self.closed = 0
        self.released = 0

    def read1(self, amt: int = -1) -> bytes:
        self.reads += 1
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        return chunk

    def close(self) -> None:
        self.closed += 1

    def release_conn(self) -> None:
        self.released += 1


def line_reader(chunks: Sequence[bytes | Exception]) -> Iterator[list[tuple[bytes, bytes]] | Exception]:
    """The line-by-line reader (`reference`), a read at a time: the events each read completes (or the read's
    exception)."""
    pending: list[bytes] = []
    event: bytes | None = None
    data: list[bytes] = []
    for chunk in chunks:
        if isinstance(chunk, Exception):
            yield chunk
            return
        out: list[tuple[bytes, bytes]] = []
        if b"\n" not in chunk:
            pending.append(chunk)
            yield out
            continue
        if pending:
            pending.append(chunk)
            chunk = b"".join(pending)
            pending.clear()
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if tail:
            pending.append(tail)
        for line in lines:
            line = line.rstrip(b"\r")
            if line:
                if line[:6] == b"data: ":
                    data.append(line[6:])
                elif line[:7] == b"event: ":
                    event = line[7:]
                else:
                    name, _, value = line.partition(b":")
                    value = value[1:] if value[:1] == b" " else value
                    if name == b"event":
                        event = value
                    elif name == b"data":
                        data.append(value)
                continue
            if event is not None and event != b"ping" and data:
                out.append((event, data[0] if len(data) == 1 else b"\n".join(data)))
            event, data = None, []
        yield out


def reference(chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The reader DirectStream._events had until December 2026, line by line (its yield made a pair): the events of
    every read of `line_reader`, in order."""
    out: list[tuple[bytes, bytes]] = []
    for events in line_reader(chunks):
        assert not isinstance(events, Exception)
        out.extend(events)
    return out


CLIENT = AnthropicClient(api_key="sk-ant-x", base_url="http://127.0.0.1:9", timeout=5)


def parsed(chunks: list[bytes], whole: bool = False) -> list[tuple[bytes, bytes]]:
    """The events _sse reads; `whole`: as it reads them before the first event is handed out (and for fold_rest),
    several events of a read as their bytes, read here as `_events` and `relayed` read them (_events_of)."""
    stream = DirectStream(CLIENT, Reads(chunks), b"{}")
    stream._whole = whole
    return [pair for batch in stream._sse()
            for pair in (_events_of(batch, len(batch)) if type(batch) is bytes else batch)]


def ev(kind: str, data: Any, end: bytes = b"\n") -> bytes:
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    return b"event: " + kind.encode() + end + b"data: " + payload + end + end


PLAIN = (ev("message_start", {"type": "message_start", "message": {"id": "m", "content": []}})
         + ev("ping", {"type": "ping"})
         + ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": "h\u00e9llo \u2603\n"}})
         + ev("message_stop", {"type": "message_stop"}))
CASES = {
    "plain": PLAIN,
    "crlf": PLAIN.replace(b"\n", b"\r\n"),
    "cr_late": PLAIN + ev("content_block_stop", {"type": "content_block_stop", "index": 0}, b"\r\n") + PLAIN,
    "cr_inside_a_line": PLAIN + b"event: x\rdata: 1\ndata: 2\n\n" + PLAIN,
    "cr_cr_lf": b"event: a\r\r\ndata: 1\r\r\n\r\r\n" + PLAIN,
    "lone_cr_lines": b"event: a\ndata: 1\n\r\n" + b"\r\n\r\n" + PLAIN,
    "no_space": b"event:a\ndata:1\n\nevent:  b\ndata:  2\n\n",
    "multi_line_data": b'event: x\ndata: {"a":\ndata:  1}\n\n' + PLAIN,
    "comments_and_ids": b": hi\n\nid: 7\nevent: a\n: c\nretry: 5\ndata: 1\n\n" + PLAIN,
    "data_before_event": b"data: 1\nevent: a\n\n" + PLAIN,
    "event_twice": b"event: a\nevent: b\ndata: 1\n\n",
    "no_event": b"data: 1\n\n" + PLAIN,
    "no_data": b"event: a\n\n" + PLAIN,
    "empty_data": b"event: a\ndata: \n\nevent: b\ndata:\n\n",
    "empty_event_name": b"event: \ndata: 1\n\nevent\ndata: 2\n\n",
    "bare_field_names": b"event\ndata\n\n" + PLAIN,
    "many_blank_lines": b"\n\n\n" + b"event: a\ndata: 1\n\n\n\n\nevent: b\ndata: 2\n\n\n",
    "leading_blank": b"\nevent: a\ndata: 1\n\n",
    "unterminated_last": PLAIN + b"event: a\ndata: 1\n",
    "unterminated_line": PLAIN + b"event: a\ndata: 1",
    "ping_with_data_lines": b"event: ping\ndata: 1\ndata: 2\n\n" + PLAIN,
    "event_named_data": b"event: data: x\ndata: 1\n\n",
    "data_named_event": b"data: event: x\nevent: y\n\n",
    "utf8": ev("a", "\u00e9\u2603\U0001f600".encode()),
    "three_lines_no_blank_between": b"event: a\ndata: 1\nevent: b\ndata: 2\n\n",
    # A read of events all in the providers' form is read at once (_EVENTS); anything else among them, one by one.
    "plain_twice": PLAIN + PLAIN,
    "pings_only": ev("ping", {"type": "ping"}) * 3,
    "plain_a_comment_plain": PLAIN + b": c\n\n" + PLAIN,
    "plain_blank_lines_plain": PLAIN + b"\n\n" + PLAIN,
    "plain_an_id_plain": PLAIN + b"id: 1\n\n" + PLAIN,
    "data_that_reads_as_an_event": b"event: a\ndata: x\nevent: b\ndata: y\n\n" + PLAIN,
}


def splits(body: bytes, step: int = 7, seconds: tuple[int, ...] = (1, 2, 3, 13),
           first_alone: bool = False) -> Iterator[list[bytes]]:
    """`body` split into reads: whole, a read an event (with `first_alone`, also the first event alone and then the
    rest), a byte a read, in two at every byte, in three (the first cut every `step` bytes, the second read of each
    length in `seconds`)."""
    events = [piece + b"\n\n" for piece in body.split(b"\n\n")[:-1]]
    rest = body.split(b"\n\n")[-1]
    yield [body]
    yield [*events, rest]  # a read an event
    if first_alone:
        yield [events[0], b"".join(events[1:]) + rest]  # message_start alone, then the rest
    yield [body[i:i + 1] for i in range(len(body))]
    for cut in range(1, len(body)):
        yield [body[:cut], body[cut:]]
    for cut in range(1, len(body), step):  # three reads, the second of varied length
        for second in seconds:
            yield [body[:cut], body[cut:cut + second], body[cut + second:]]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_events_are_those_the_line_reader_read_at_every_split(name: str) -> None:
    body = CASES[name]
    expected = reference([body])
    for chunks in splits(body):
        assert reference(chunks) == expected  # the reference itself does not depend on the reads
        assert parsed(chunks) == expected, chunks
        assert parsed(chunks, whole=True) == expected, chunks


def test_the_common_form_is_read_whole() -> None:
    # The form every provider sends: what the reference reads, and no event lost at any boundary of three.
    body = PLAIN * 3
    assert [event for event, _ in parsed([body])] == [b"message_start", b"content_block_delta",
                                                      b"message_stop"] * 3

"""The events of a streamed Anthropic Messages answer read over the direct exchange (inference.providers.http1):
`DirectStream`, what `AnthropicClient.messages_stream_raw` returns, and its SSE parser."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anthropic
import httpx2
import urllib3

from config.http import Framed
from inference.providers import http1
from inference.providers.anthropic_fold import fold_read, relay_items, run_datas, run_text

if TYPE_CHECKING:
    from inference.providers.anthropic_api import AnthropicClient
    from inference.streaming import Fold

class DirectStream:
    """The events of a streaming Messages response, as the SDK's `Stream` yields them: every event with data but
    `ping`; an `event: error` raises the SDK's APIStatusError; a broken connection raises APIConnectionError (or
    APITimeoutError). `close()` gives the connection back to the pool when the stream was read to its end, and
    discards it otherwise."""

    def __init__(self, client: AnthropicClient, response: Any, payload: bytes, *, first_event_by: float | None = None,
                 read_timeout: float | None = None) -> None:
        self._client = client
        self._response = response
        self._payload = payload
        self._finished = False
        self._closed = False
        self._first_event_by = first_event_by  # until the first event: every read ends by then
        self._read_timeout = read_timeout  # after it: each read's own timeout, as for any stream
        # Events relayed to a client (inference.router.route_stream sets this once the stream is chosen) come as
        # Framed events, with their bytes; folded into a Message (a non-streaming call), plain dicts.
        self.framed = False
        self._batch: list[tuple[bytes, bytes]] = []  # the events of the last read, handed out up to `_at`
        self._at = 0
        self._part = b""  # and after them, the rest of that read's events undecoded (see `_whole`)
        self._reads: Iterator[Any] | None = None  # _sse(), once reading has started
        # While set, _sse hands out a read that completes several events as its bytes (those events, whole), for
        # `_events` to take only the first event out of (the rest in `_part`) and `fold_rest` to fold at once;
        # until the first event is handed out, and again once fold_rest takes over.
        self._whole = True

    def __iter__(self) -> Iterator[Any]:
        return self._events()

    def ready(self) -> tuple[bytes, bytes] | None:
        """The next event (its name and data, undecoded) if it has arrived already: handing it out will not wait
        for the provider. None if the next event is yet to be read."""
        self._undecoded()
        batch, at = self._batch, self._at
        return batch[at] if at < len(batch) else None

    def _events(self) -> Iterator[Any]:
        try:
            self._reads = reads = self._sse()
            for read in reads:
                batch = self._first_of(read) if type(read) is bytes else read
                self._batch = batch
                for at, (event, data) in enumerate(batch, 1):
                    self._at = at
                    decoded = self._decoded(event, data)
                    if self._first_event_by is not None:
                        self._first_event_by = None
                        self._socket_timeout(self._read_timeout)
                    yield decoded
                    if self._part:  # iterated on: the rest of the read's events join the batch being handed out
                        self._undecoded()
        finally:
            self.close()

    def _first_of(self, read: bytes) -> list[tuple[bytes, bytes]]:
        """The events of `read` (one of _sse's whole reads) to hand out now: only its first, the rest kept in
        `_part`, if that one is in the providers' form and not a ping; else all of them. Whole reads end here."""
        self._whole = False
        end = read.find(b"\n\n")
        line = read.find(b"\n", 0, end)
        if read[:7] == b"event: " and line > 0 and read[line + 1:line + 7] == b"data: " and \
                read.find(b"\n", line + 1, end) < 0:
            event = read[7:line]
            if event != b"ping":
                self._part = read[end + 2:]
                return [(event, read[line + 7:end])]
        return _events_of(read, len(read))

    def _undecoded(self) -> None:
        """The events in `_part` appended to the batch being handed out (as they would have been had _sse read
        them into it)."""
        part = self._part
        if part:
            self._part = b""
            self._batch += _events_of(part, len(part))

    def relayed(self, fold: Callable[[dict[str, Any]], None],
                append: Callable[[int, str, str], bool] | None = None) -> Iterator[list[Any]]:
        """The events not handed out yet, for relaying to a client read by read (iterating the stream hands out the
        first event; this takes over from there): first a list of those of the current read after it (empty if
        none is there: reading on would wait for the provider), then one for each read that completes events.

        Each object event is passed to `fold` (others are dropped, as the relay drops them), then written either as
        it came or decoded: one of _VERBATIM's kinds, named as its data's `type`, whose data is one line of plain
        JSON (what `framed` events are) is its SSE frame (`event: <name>\ndata: <data>\n\n`, what
        config.http.sse_frame writes for it), consecutive ones joined into one bytes; anything else (message_start,
        message_stop, kinds Atrium does not know, data not plain) is the event itself, for the caller to frame
        (Framed, with its bytes, when its data is plain). An `error` event raises, once the events of its read
        before it are handed out.

        With `append` (the fold's Fold.append), a read's run of text deltas in the providers' form is written as it
        came and folded at once (inference.providers.anthropic_fold), as each of its events would be."""
        self._whole = append is not None  # reads whole, for relay_items
        rest: list[Any] = self._batch[self._at:]
        self._batch, self._at = [], 0  # ready() has nothing to say from here on
        part, self._part = self._part, b""
        if part:
            items = relay_items(part) if append is not None else None
            rest += items if items is not None else _events_of(part, len(part))
        if self._reads is None:
            self._reads = self._sse()
        scan = _scan
        verbatim = _VERBATIM
        first = True
        try:
            for batch in itertools.chain((rest,), self._reads):
                if type(batch) is bytes:
                    items = relay_items(batch)
                    batch = items if items is not None else _events_of(batch, len(batch))
                parts: list[Any] = []
                run: list[bytes] = []
                try:
                    for name, data in batch:
                        if name is None:  # a run of text deltas (relay_items): written as they came
                            text, index, spaced = data
                            if append(int(index), "text", run_text(text, index, spaced)):  # type: ignore[misc]
                                run.append(text.encode())
                                continue
                            for each in run_datas(text):  # folded one by one, as any delta (Fold.add)
                                fold(scan(each, 0)[0])
                                run += (b"event: content_block_delta\ndata: ", each.encode(), b"\n\n")
                            continue
                        try:
                            text = data.decode()
                            value, end = scan(text, 0)
                            plain = end == len(text) and name != b"error"
                        except (ValueError, StopIteration):
                            plain = False
                        if not plain:
                            value = self._decoded(name, data)  # an error event raises; anything else decodes
                        if type(value) is not dict:
                            continue
                        fold(value)
                        if plain and b"\n" not in data and b"\r" not in data:
                            if value.get("type") == verbatim.get(name):
                                run += (b"event: ", name, b"\ndata: ", data, b"\n\n")
                                continue
                            value = Framed(value)  # written with its own bytes unless the caller changes it
                            value.data = data
                        if run:
                            parts.append(b"".join(run))
                            run = []
                        parts.append(value)
                except Exception:
                    if run:
                        parts.append(b"".join(run))
                    if parts:
                        yield parts  # what arrived before the failure goes out before it
                    raise
                if run:
                    parts.append(b"".join(run))
                if parts:
                    if self._first_event_by is not None:
                        self._first_event_by = None
                        self._socket_timeout(self._read_timeout)
                    first = False
                    yield parts
                elif first:
                    first = False
                    yield parts
        finally:
            self.close()

    def fold_rest(self, fold: Fold) -> None:
        """Fold the events not handed out yet into `fold` (a non-streaming call's Message; iterating the stream
        handed out the first event, this takes over from there) as `for event in self: fold.add(event)` would,
        raising what that would raise; the stream is closed at the end. What a read completes of events in the
        providers' form is folded from its text at once (inference.providers.anthropic_fold)."""
        try:
            rest = self._batch[self._at:]
            self._batch, self._at = [], 0
            decoded = self._decoded
            for event, data in rest:
                fold.add(decoded(event, data))
            if self._reads is None:
                self._reads = self._sse()
            reads = itertools.chain((self._part,), self._reads) if self._part else self._reads
            self._part = b""
            self._whole = True
            for read in reads:
                if type(read) is bytes:
                    if fold_read(fold, read, decoded):
                        continue
                    read = _events_of(read, len(read))
                for event, data in read:
                    fold.add(decoded(event, data))
        finally:
            self.close()

    def _sse(self) -> Iterator[Any]:
        """For each read, the events it completed: (event, data) of each with an event name and data, `ping`
        excepted (while `_whole`, the bytes of those events if they are several and have no CR); read as the SDK's
        decoder reads SSE (a line ends at LF, a CR before it dropped; a blank line ends an event).

        While no CR has arrived, what has arrived is cut at its last blank line and the events before it read in one
        step (`_EVENTS`) when they are all in the form providers send (`event: x`, then one `data: ` line), else
        each event between blank lines; once a CR arrives, line by line from there on."""
        pending = b""  # the start of an event that has not ended yet (no CR: at an event's start)
        while True:
            chunk = self._read()
            if not chunk:
                self._finished = True
                return
            if b"\r" in chunk:
                break
            if pending:
                searched = len(pending) - 1
                chunk = pending + chunk
            else:
                searched = 0
                if chunk[:7] == b"event: " and chunk[-2:] == b"\n\n":  # one event in the read, as often
                    line = chunk.find(b"\n")
                    if chunk[line + 1:line + 7] == b"data: " and chunk.find(b"\n", line + 7) == len(chunk) - 2:
                        event = chunk[7:line]
                        yield [(event, chunk[line + 7:-2])] if event != b"ping" else []
                        continue
            cut = chunk.rfind(b"\n\n", searched)
            if cut < 0:
                pending = chunk
                continue
            pending = chunk[cut + 2:]
            if self._whole:
                yield chunk[:cut + 2] if pending else chunk
            else:
                yield _events_of(chunk, cut + 2)
        # Line by line from here on: every line of a read split at once, the start of an unended line kept.
        state: list[Any] = [None, []]  # the event being read: its name, its data lines
        lines = (pending + chunk).split(b"\n")
        while True:
            tail = lines.pop()
            batch: list[tuple[bytes, bytes]] = []
            _lines(lines, state, False, batch)
            yield batch
            chunk = self._read()
            if not chunk:
                self._finished = True
                return
            lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")

    def _read(self) -> bytes:
        by = self._first_event_by
        if by is not None:
            self._socket_timeout(max(by - time.monotonic(), 0.0005))
        try:
            chunk = bytes(self._response.read1(65536))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._client.transport_error(exc, self._payload) from exc
        if by is not None and time.monotonic() > by + 0.05:  # the socket's timeout did not hold (a bound anyway)
            raise anthropic.APITimeoutError(request=self._client._failed_request(self._payload))
        return chunk

    def _decoded(self, event: bytes, data: bytes) -> Any:
        """The event's data decoded: json.loads(data), in one call of the C scanner when `data` is plain UTF-8 JSON
        with nothing around it (anything else, whitespace, a BOM, invalid JSON or UTF-8, is left to json.loads,
        which decodes or raises); with `framed`, an object that was plain JSON on one line comes as a Framed event
        with its bytes, to be relayed as it came (config.http.sse). An `error` event raises."""
        if event != b"error":
            try:
                text = data.decode()
                value, end = _scan(text, 0)
            except (ValueError, StopIteration):
                return json.loads(data)
            if end != len(text):
                return json.loads(data)
            if self.framed and type(value) is dict and b"\n" not in data and b"\r" not in data:
                value = Framed(value)
                value.data = data
            return value
        try:
            body: Any = json.loads(data)
        except ValueError:
            body = data.decode(errors="replace")
        raise self._client._make_status_error(
            f"{body}", body=body, response=httpx2.Response(self._response.status, content=data,
                                                           request=self._client._failed_request(self._payload)))

    def _socket_timeout(self, seconds: float | None) -> None:
        """Set the timeout of the socket the answer is read from: the connection's, or (an answer that closes
        its connection, which http.client then detaches from the answer's connection) the one under the
        answer's own file object."""
        if isinstance(self._response, http1.Answer):
            self._response.settimeout(seconds)
            return
        connection = self._response.connection
        sock = getattr(connection, "sock", None) if connection is not None else None
        if sock is None:
            raw = getattr(getattr(getattr(self._response, "_fp", None), "fp", None), "raw", None)
            sock = getattr(raw, "_sock", None)
        if sock is not None:
            sock.settimeout(seconds)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._finished:
            self._response.close()  # unread data on it: the connection cannot be reused
        self._response.release_conn()


def _events_of(chunk: bytes, end: int) -> list[tuple[bytes, bytes]]:
    """(event, data) of each event of `chunk[:end]` (complete events: it ends with a blank line; no CR) but
    `ping`: all at once when they are all in the providers' form (`_EVENTS`), else each between blank lines."""
    batch: list[tuple[bytes, bytes]] = _EVENTS(chunk, 0, end)
    if batch:
        names, datas = zip(*batch, strict=True)
        if len(b"".join(names)) + len(b"".join(datas)) + 16 * len(batch) == end:  # every byte an event's
            return [item for item in batch if item[0] != b"ping"] if b"ping" in names else batch
        batch = []
    for block in chunk[:end - 2].split(b"\n\n"):
        if block[:7] == b"event: ":
            line = block.find(b"\n")
            if line > 0 and block[line + 1:line + 7] == b"data: " and block.find(b"\n", line + 1) < 0:
                event = block[7:line]
                if event != b"ping":
                    batch.append((event, block[line + 7:]))
                continue
        _lines(block.split(b"\n"), [None, []], True, batch)
    return batch


def _lines(lines: list[bytes], state: list[Any], ended: bool, out: list[tuple[bytes, bytes]]) -> None:
    """Append to `out` (event, data) of each event that `lines` (complete SSE lines, without their LF) end; `state`
    carries the event being read across calls ([name or None, data lines]); `ended`: a blank line follows."""
    event: bytes | None = state[0]
    data: list[bytes] = state[1]
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
        if event is not None and event != b"ping" and data:  # a blank line ends an event
            out.append((event, data[0] if len(data) == 1 else b"\n".join(data)))
        event, data = None, []
    if ended:
        if event is not None and event != b"ping" and data:
            out.append((event, data[0] if len(data) == 1 else b"\n".join(data)))
        event, data = None, []
    state[0], state[1] = event, data


# Events in the form providers send, `event: x` then one `data: ` line, the blank line after: (name, data) of each.
# What this finds in a stretch of a read is that stretch's events (as reading it event by event gives them) when the
# events found cover it: 16 bytes of each are the form's own.
_EVENTS: Any = re.compile(rb"event: ([^\n]*)\ndata: ([^\n]*)\n\n").findall

# The events `relayed` writes with the bytes they came with when nothing about them changes (the kinds
# inference.types.RouterStream.ready tells ready), by SSE name: the `type` their data must have.
_VERBATIM = {name.encode(): name for name in
             ("content_block_start", "content_block_delta", "content_block_stop", "message_delta")}

_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # json.loads's C scanner, without the checks around it

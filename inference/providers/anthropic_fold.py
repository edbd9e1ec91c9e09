"""A non-streaming call's fold of a read of the provider's stream (inference.providers.anthropic_stream
DirectStream.fold_rest): the events of a read in the form providers write them folded into the Message from the
read's text in one pass, with fewer Python objects per event than decoding each event and adding it
(inference.streaming.Fold.add) and the same Message, or the same exception, as a result."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.streaming import Fold


def fold_read(fold: Fold, read: bytes, decoded: Callable[[bytes, bytes], Any]) -> bool:
    """Fold the events of `read` (complete events, ending with a blank line, no CR) into `fold` as
    `fold.add(decoded(name, data))` of each event but `ping` would (`decoded`: the stream's decoding of an event,
    which raises for an `error` event), if `read` is UTF-8 and all its events are in the providers' form
    (`event: x`, one `data: ` line, a blank line); else False, and nothing folded.

    A run of text deltas to the same block, each written as providers write it (`_run`), is appended at once as its
    deltas would be (`run_text`, Fold.append) unless Fold.add would treat them otherwise, in which case each is
    added. A stop event is one of a few known ones (`_KNOWN`), anything else decoded as `decoded` decodes it."""
    items = _items(read)
    if items is None:
        return False
    for run, index, spaced_run, spaced_index, name, data in items:
        if run or spaced_run:
            if spaced_run:
                run, index = spaced_run, spaced_index
            if not fold.append(int(index), "text", run_text(run, index, bool(spaced_run))):
                for each in run_datas(run):
                    fold.add(decoded(b"content_block_delta", each.encode()))
            continue
        if name == "ping":
            continue
        if name == "error":
            fold.add(decoded(b"error", data.encode()))  # raises
        value = _KNOWN.get(data)
        if value is None:
            try:
                value, end = _scan(data, 0)
            except (ValueError, StopIteration):
                end = -1
            if end != len(data):  # not plain JSON: json.loads decodes it or raises, as the stream's decoding does
                value = json.loads(data.encode())
        fold.add(value)
    return True


def relay_items(read: bytes) -> list[tuple[bytes | None, Any]] | None:
    """The events of `read` (as for fold_read) if all are in the providers' form: (name, data) of each but `ping`,
    except that a run of text deltas to the same block written as providers write them is one item, (None, (the
    run's text, its index, whether spaced)); None if some event is in another form."""
    items = _items(read)
    if items is None:
        return None
    return [(None, (run, index, False)) if run else (None, (spaced_run, spaced_index, True)) if spaced_run
            else (name.encode(), data.encode()) for run, index, spaced_run, spaced_index, name, data in items
            if name != "ping" or run or spaced_run]


def run_text(run: str, index: str, spaced: bool) -> str:
    """The text a run of text deltas appends to its block: each delta's JSON string (what follows its head, up to
    the `"}}` and blank line that end its event), joined and read at once, or each on its own when one holds a
    surrogate's \\u escape (which could pair with one of the next string's, where decoding each would not)."""
    head, middle = _DELTA_SPACED if spaced else _DELTA
    strings = map(itemgetter(slice(len(head) + len(index) + len(middle), None)), run[:-5].split('"}}\n\n'))
    joined = "".join(strings)
    if "\\" not in joined:
        return joined
    if "\\ud" in joined or "\\uD" in joined:
        strings = map(itemgetter(slice(len(head) + len(index) + len(middle), None)), run[:-5].split('"}}\n\n'))
        return "".join([_scanstring(string + '"', 0, True)[0] for string in strings])
    text: str = _scanstring(joined + '"', 0, True)[0]
    return text


def run_datas(run: str) -> list[str]:
    """The data of each event of a run of text deltas."""
    return [event[event.index("\n") + 7:] for event in run[:-2].split("\n\n")]


def _items(read: bytes) -> list[tuple[str, str, str, str, str, str]] | None:
    """`_TOKENS` of `read`'s text if it is UTF-8 and they cover it (every character an event's); else None."""
    try:
        text = read.decode()
    except UnicodeDecodeError:
        return None
    items: list[tuple[str, str, str, str, str, str]] = _TOKENS(text)
    if not items:
        return None if text else items
    runs, _, spaced_runs, _, names, datas = zip(*items, strict=True)
    single = len(items) - (len(runs) - runs.count("")) - (len(spaced_runs) - spaced_runs.count(""))
    if (len("".join(runs)) + len("".join(spaced_runs)) + len("".join(names)) + len("".join(datas)) + 16 * single
            != len(text)):  # not every character an event's: some event is in another form
        return None
    return items


# A text delta as providers write it: compact, or with json.dumps's spaces (the start of the event, up to its
# index; from after its index to the start of its text).
_DELTA = ('event: content_block_delta\ndata: {"type":"content_block_delta","index":',
          ',"delta":{"type":"text_delta","text":"')
_DELTA_SPACED = ('event: content_block_delta\ndata: {"type": "content_block_delta", "index": ',
                 ', "delta": {"type": "text_delta", "text": "')
# A JSON string's content (strict: no control character), unrolled (no alternation per character).
_STRING = r'[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*'


def _run(delta: tuple[str, str], group: str) -> str:
    """One text delta or more in a row, all in the form `delta` and to the same block (a JSON integer index)."""
    head, middle, tail = re.escape(delta[0]), re.escape(delta[1]), re.escape('"}}\n\n')
    return (f"({head}(?P<{group}>0|[1-9][0-9]{{0,8}}){middle}{_STRING}{tail}"
            f"(?:{head}(?P={group}){middle}{_STRING}{tail})*)")


# A read's events, each match one of: a run of text deltas (compact, then spaced: the run, its index), or any event
# in the providers' form (its name, its data).
_TOKENS: Any = re.compile(_run(_DELTA, "compact") + "|" + _run(_DELTA_SPACED, "spaced")
                          + r"|event: ([^\n]*)\ndata: ([^\n]*)\n\n").findall

# Data of events whose decoded value can be shared (Fold.add only reads a stop event): data -> value.
_KNOWN: dict[str, Any] = {
    json.dumps(value, separators=separators): value
    for value in [{"type": "message_stop"}, *({"type": "content_block_stop", "index": i} for i in range(16))]
    for separators in ((",", ":"), (", ", ": "))}

_scan: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # json.loads's C scanner, without the checks around it
_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]  # its string reader: (the string, the index after it) from after a quote

"""Stream events: folding them into the Message JSON they describe, and relaying them after the first one."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic

from inference.types import RouterStream

logger = logging.getLogger(__name__)


def close_quietly(stream: Any) -> None:
    if stream is not None:
        try:
            stream.close()
        except Exception:
            logger.debug("closing an upstream stream failed", exc_info=True)


def accumulate(message: dict[str, Any], event: dict[str, Any]) -> None:
    """Fold one stream event into the Message JSON it describes (as the SDKs' stream helpers do).

    Every field the provider sends is kept: message_start's message as it is, each block as its
    content_block_start gave it plus its deltas (text, tool input JSON, thinking and its signature, citations),
    message_delta's fields and usage (cache read/write tokens included)."""
    kind = event.get("type")
    if kind == "message_start":
        message.update(event.get("message") or {})
        content = message.get("content")
        # The blocks (and their citations) are changed by the deltas: the event keeps its own (a relay may write
        # it after folding the events that came with it).
        message["content"] = copy.deepcopy(content) if content else []
        message["usage"] = dict(message.get("usage") or {})
    elif kind == "content_block_start":
        blocks = message.setdefault("content", [])
        block = dict(event.get("content_block") or {})
        if isinstance(block.get("citations"), list):
            block["citations"] = list(block["citations"])  # citations_delta appends to it
        index = int(event.get("index", len(blocks)))
        while len(blocks) <= index:
            blocks.append({})
        blocks[index] = block
    elif kind == "content_block_delta":
        blocks = message.setdefault("content", [])
        index = int(event.get("index", 0))
        if index >= len(blocks):
            return
        _apply_delta(blocks[index], event.get("delta") or {})
    elif kind == "content_block_stop":
        blocks = message.get("content") or []
        index = int(event.get("index", 0))
        if index < len(blocks) and "_partial_json" in blocks[index]:
            raw = blocks[index].pop("_partial_json")
            try:
                blocks[index]["input"] = json.loads(raw) if raw else {}
            except ValueError:
                blocks[index]["input"] = {}
    elif kind == "message_delta":
        delta = event.get("delta") or {}
        for key, value in delta.items():
            message[key] = value
        usage = message.setdefault("usage", {})
        for key, value in (event.get("usage") or {}).items():
            if value is not None:
                usage[key] = value


def _apply_delta(block: dict[str, Any], delta: dict[str, Any]) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + delta.get("text", "")
    elif kind == "input_json_delta":
        block["_partial_json"] = block.get("_partial_json", "") + delta.get("partial_json", "")
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
    elif kind == "signature_delta":
        block["signature"] = block.get("signature", "") + delta.get("signature", "")
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta.get("citation"))


# The deltas whose text is appended to a field of their block: (the block's field, the delta's).
_APPENDED = {"text_delta": ("text", "text"), "thinking_delta": ("thinking", "thinking"),
             "input_json_delta": ("_partial_json", "partial_json"), "signature_delta": ("signature", "signature")}


class Fold:
    """The Message a stream's events describe, folded as `accumulate` folds them event by event, except that a run
    of deltas appending to the same field of the same block (a text, its thinking, a tool's input JSON, a
    signature) is joined once rather than appended to at each event (which copies the text so far each time: a
    cost quadratic in the answer's length). Any other event, or a delta `accumulate` would treat in any other way,
    ends the run first. `flush()` ends the run under way and returns the Message (current only then)."""

    __slots__ = ("_block", "_field", "_parts", "message")

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self._block: dict[str, Any] | None = None  # the block of the run under way, its field, the field's parts
        self._field = ""
        self._parts: list[str] = []

    def add(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        if event.get("type") == "content_block_delta":
            delta = event.get("delta")
            appended = _APPENDED.get(delta.get("type")) if type(delta) is dict else None  # type: ignore[arg-type]
            if appended is not None:
                name, key = appended
                text = delta.get(key, "")  # type: ignore[union-attr]
                index = event.get("index", 0)
                blocks = self.message.get("content")
                if type(text) is str and type(index) is int and type(blocks) is list and 0 <= index < len(blocks):
                    target = blocks[index]
                    if target is self._block and name == self._field:
                        self._parts.append(text)
                        return
                    if type(target) is dict and type(target.get(name, "")) is str:
                        self.flush()
                        self._block, self._field, self._parts = target, name, [target.get(name, ""), text]
                        return
        self.flush()
        accumulate(self.message, event)

    def append(self, index: int, name: str, text: str) -> bool:
        """`add` of a content_block_delta at `index` (>= 0) whose delta appends `text` to its block's field `name`
        (a text delta's to `text`, _APPENDED), if add would fold it into a run; else False, and nothing done (add
        the event)."""
        blocks = self.message.get("content")
        if type(blocks) is list and index < len(blocks):
            target = blocks[index]
            if target is self._block and name == self._field:
                self._parts.append(text)
                return True
            if type(target) is dict and type(target.get(name, "")) is str:
                self.flush()
                self._block, self._field, self._parts = target, name, [target.get(name, ""), text]
                return True
        return False

    def flush(self) -> dict[str, Any]:
        block = self._block
        if block is not None:
            block[self._field] = "".join(self._parts)
            self._block = None
        return self.message


def collect(first: Any, rest: Iterator[Any], fold_rest: Callable[[Fold], None] | None = None) -> dict[str, Any]:
    """The whole Message from a stream whose first event is in hand (raises what the stream raises), folded by
    `Fold`: the Message `accumulate` folds. `fold_rest`: the stream's own way of folding its events after the
    first (inference.providers.anthropic_stream DirectStream.fold_rest), used instead of iterating `rest`."""
    fold = Fold()
    fold.add(first)
    if fold_rest is not None:
        fold_rest(fold)
    else:
        for event in rest:
            fold.add(event)
    message = fold.flush()
    if message.get("stop_reason") is None:
        raise anthropic.APIConnectionError(request=None,  # type: ignore[arg-type]
                                           message="the provider's stream ended before message_stop")
    return message


def relay(result: RouterStream, first: Any, rest: Iterator[Any],
          on_failure: Callable[[BaseException], str]) -> Iterator[dict[str, Any]]:
    """Hand out events, accumulating the message; a failure after the first event ends with an error event.

    `on_failure(exc)` classifies the failure (counting it against the breaker) and returns its reason."""
    fold = Fold()
    result.message_from(fold.flush)  # result.message: the Message so far, whenever it is read
    try:
        event = first
        while True:
            if isinstance(event, dict):
                fold.add(event)
                yield event
            try:
                event = next(rest)
            except StopIteration:
                break
    except GeneratorExit:
        result.incomplete = fold.flush().get("stop_reason") is None
        result.close()
        raise
    except Exception as exc:
        yield _failed(result, exc, on_failure)
    finally:
        result.latency_ms = (time.monotonic() - result.started_at) * 1000


def _failed(result: RouterStream, exc: Exception, on_failure: Callable[[BaseException], str]) -> dict[str, Any]:
    """A relay's end on a provider failure after the stream started: the result marked incomplete with its error,
    closed, and the `error` event the client gets."""
    try:
        reason = on_failure(exc)
    except Exception:
        reason = f"{type(exc).__name__}"
        logger.exception("unexpected error while relaying a provider stream")
    result.incomplete = True
    result.error = {"type": _stream_error_type(exc),
                    "message": f"The provider stream failed after it started ({reason})."}
    result.close()
    return {"type": "error", "error": result.error}


def relay_pieces(result: RouterStream, first: Any, rest: Iterator[Any], on_failure: Callable[[BaseException], str],
                 relayed: Callable[..., Iterator[list[Any]]] | None = None,
                 ) -> Iterator[list[Any]]:
    """`relay`, a read of the provider's at a time: lists of the events that arrived together, each either the
    bytes of events relayed as they came (`relayed`, the provider stream's own: inference.providers.anthropic_stream)
    or an event (a dict) for the caller to frame. The first list holds the first event and those that arrived with
    it, and is handed out before anything more is read. Without `relayed`, each event of `rest` is a list of its
    own. The Message is folded, and a failure ends the lists, as in `relay`."""
    fold = Fold()
    result.message_from(fold.flush)
    parts: list[Any] = []
    try:
        if isinstance(first, dict):
            fold.add(first)
            parts.append(first)
        if relayed is not None:
            for read in relayed(fold.add, fold.append):
                if parts:
                    parts += read
                    read, parts = parts, []
                yield read
        else:
            if parts:
                yield parts
                parts = []
            for event in rest:
                if isinstance(event, dict):
                    fold.add(event)
                    yield [event]
    except GeneratorExit:
        result.incomplete = fold.flush().get("stop_reason") is None
        result.close()
        raise
    except Exception as exc:
        parts.append(_failed(result, exc, on_failure))
        yield parts
    finally:
        result.latency_ms = (time.monotonic() - result.started_at) * 1000


def _stream_error_type(exc: BaseException) -> str:
    """An upstream `event: error` arrives as an APIStatusError (HTTP status 200) carrying the provider's error body."""
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error: dict[str, Any] = body.get("error") if isinstance(body.get("error"), dict) else {}  # type: ignore[assignment]
        if error.get("type") == "overloaded_error" or exc.status_code == 529:
            return "overloaded_error"
    return "api_error"

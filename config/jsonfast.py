"""The project's fast JSON: orjson where its answer is json's, json where it would not be.

orjson (Rust) encodes the request path's documents about ten times faster than json's C encoder, and writes UTF-8
bytes at once (docs/decisions.md, "orjson for the request path's JSON", has the figures). It is not json, though,
and these functions hand over to json wherever the two would differ:

- encoding: what orjson refuses (integers beyond 64 bits, lone surrogates, keys that are not strings, nesting
  deeper than 254, circular references, a `default` that fails) is encoded by json exactly as before (compact,
  ASCII-escaped), or raises what json raised. Dataclasses and dates go to `default`, as json sends them (orjson
  would write its own forms). What stays different is spelling: non-ASCII text as UTF-8 rather than \\u escapes,
  floats in orjson's shortest form (1e16 for json's 1e+16: the same value), and NaN or an infinity as null (json
  wrote NaN, which is not JSON; json_loads_limited keeps clients' NaN out).
- decoding: orjson reads an integer beyond 64 bits as a float, so a text with a run of 19 digits is read by json (a
  run that long inside a string costs json's speed, nothing else); whatever orjson refuses to read (NaN, Infinity,
  lone surrogates, a BOM, UTF-16, nesting deeper than 1024, invalid JSON) is json's to read or refuse, with json's
  error and message. (Nesting between json's recursion limit, about 1000, and orjson's 1024 reads where json raised
  RecursionError; json_loads_limited refuses both long before.)

Never for anything hashed, MAC'd or signed (audit.verify.canonical and what it covers, checkpoints, receipts, the
SIEM wire): their bytes are json's, floats and escapes included, and must stay so. (audit.verify.
canonical_text_plain uses orjson itself, only on values checked to come out byte for byte as json's.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

# Dataclasses and datetime/date/time go to `default`, as json sends them (orjson writes them itself otherwise).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_SEPARATORS = (",", ":")
_COMPACT = json.JSONEncoder(separators=_SEPARATORS)
# A run of 19 digits may be an integer beyond orjson's 64 bits (-2**63 has 19 digits), which it would make a float.
# Looked for with every digit made "0" and everything else "x": two passes in C, several times faster than a
# regular expression's [0-9]{19} (which tries each position).
_DIGITS_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x78 for i in range(256))
_LONG_RUN = b"0" * 19


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact JSON as UTF-8 bytes: json.dumps(value, separators=(",", ":"), default=default).encode(), but for the
    differences in the module's docstring."""
    try:
        return orjson.dumps(value, default, _OPTIONS)
    except orjson.JSONEncodeError:
        encoder = _COMPACT if default is None else json.JSONEncoder(separators=_SEPARATORS, default=default)
        return encoder.encode(value).encode()


def dumps_text(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """dumps(value, default) as a str."""
    return dumps(value, default).decode()


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """json.loads(raw): the same value, or the same error."""
    value = _orjson_loads(raw)
    return json.loads(_text(raw)) if value is _REFUSED else value


def loads_strict(raw: bytes | bytearray | memoryview | str) -> Any:
    """loads(raw), refusing with a ValueError the two things json reads that are neither JSON nor text: NaN and
    Infinity (RFC 8259 has no such numbers), and lone surrogates (\\ud800 alone is no Unicode character: it has
    no UTF-8, so no hash, journal line or upstream request could carry it)."""
    value = _orjson_loads(raw)  # orjson refuses both
    if value is not _REFUSED:
        return value
    text = _text(raw)
    value = json.loads(text, parse_constant=_not_json)
    # Bytes without an escape of one (\\uD...) nor UTF-8-like bytes of one (json reads them: surrogatepass) hold none.
    maybe = not isinstance(text, bytes) or b"\\ud" in text or b"\\uD" in text or b"\xed" in text
    if maybe and _lone_surrogate(value):
        raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff without its pair): not Unicode text")
    return value


_REFUSED = object()


def _orjson_loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """orjson's value, or _REFUSED where json's answer may differ (what orjson refuses, a run of 19 digits)."""
    try:
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        if _LONG_RUN not in data.translate(_DIGITS_ZERO):
            return orjson.loads(data)
    except (UnicodeEncodeError, orjson.JSONDecodeError):
        pass  # json's answer: its value (NaN, a BOM, lone surrogates...) or its error and message
    return _REFUSED


def _text(raw: bytes | bytearray | memoryview | str) -> bytes | str:
    return raw if isinstance(raw, str | bytes) else bytes(raw)


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not a JSON value (JSON has no NaN or Infinity)")


def _lone_surrogate(value: Any) -> bool:
    """Whether a string of the decoded document (a key or a value) holds a lone surrogate. Iterative."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and not node.isascii():
            try:
                node.encode()
            except UnicodeEncodeError:
                return True
    return False

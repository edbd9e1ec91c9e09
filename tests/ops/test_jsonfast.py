"""config.jsonfast against json: loads gives json.loads's value or error on any text, dumps json's document (its
exact bytes but for floats' spelling and UTF-8 text), and json's own bytes wherever orjson refuses the value."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import jsonfast

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_BIG = st.one_of(st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
                 st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3),
                 st.integers(min_value=-(10**40), max_value=10**40))
_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e16, 1e15, 0.1, -0.0, 1e-7, 1e22, 5e-324, 1.7976931348623157e308, 2.0**64,
                                     -(2.0**63), 123456789.0, 1e400, -1e400]))
_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)  # surrogates, controls, astral
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), _BIG, _FLOATS,
                     _TEXT)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(_TEXT, inner, max_size=4)), max_leaves=20)


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types (1 is not 1.0, -0.0 is not 0.0, NaN is NaN), dicts in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _outcome(fn: Any, raw: Any) -> tuple[str, Any]:
    try:
        return "value", fn(raw)
    except RecursionError:
        return "error", "RecursionError"
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        return "error", (type(exc).__name__, str(exc))


def _assert_loads_as_json(raw: bytes | str) -> None:
    ours, theirs = _outcome(jsonfast.loads, raw), _outcome(json.loads, raw)
    assert ours[0] == theirs[0], (raw, ours, theirs)
    if ours[0] == "value":
        assert _same(ours[1], theirs[1]), (raw, ours, theirs)
    else:
        assert ours == theirs, raw


def _texts(value: Any) -> list[str]:
    """json's texts of the value: ASCII, compact, indented, and with its text as it is (lone surrogates too: the
    tests encode them with surrogatepass, as json reads such bytes)."""
    return [json.dumps(value), json.dumps(value, separators=(",", ":")), json.dumps(value, indent=1),
            json.dumps(value, ensure_ascii=False)]


@SETTINGS
@given(_VALUES)
def test_loads_is_json_loads_on_documents(value: Any) -> None:
    """Big integers, NaN and Infinity, lone surrogates, non-ASCII and escapes: json.loads's value, as text and bytes
    (the bytes of a lone surrogate are json's surrogatepass reading)."""
    for text in _texts(value):
        _assert_loads_as_json(text)
        _assert_loads_as_json(text.encode("utf-8", "surrogatepass"))


@SETTINGS
@given(_VALUES, st.data())
def test_loads_is_json_loads_on_broken_documents(value: Any, data: st.DataObject) -> None:
    """A document cut, with a byte changed or inserted: the same value, or the same error and message."""
    raw = json.dumps(value).encode()
    at = data.draw(st.integers(min_value=0, max_value=len(raw)))
    byte = data.draw(st.binary(min_size=1, max_size=2))
    for broken in (raw[:at], raw[:at] + byte + raw[at + 1:], raw[:at] + byte + raw[at:], byte + raw, raw + byte):
        _assert_loads_as_json(broken)


@pytest.mark.parametrize("raw", [
    b"", b" ", b"01", b"1.", b".5", b"+1", b"-", b"1e", b"1e+", b"[1,]", b'{"a":1,}', b"{,}", b"tru", b"nul",
    b"true false", b"[1 2]", b'{"a" 1}', b"{'a':1}", b'"\\x"', b'"\\u12"', b'"\\ud800"', b'"\\udc00\\ud800"',
    b'"\xed\xa0\x80"', b'"\xff"', b"\xef\xbb\xbf[1]", b"\xff\xfe[\x001\x00]\x00", b"1\x00", b"[1]\x00", b"\x00[1]",
    b"NaN", b"-Infinity", b"[Infinity]", b"nan", b"1e400", b"-1e400", b"18446744073709551616",
    b"-9223372036854775809", b"9223372036854775808", b"123456789012345678901234567890.5", b'"1234567890123456789012"',
    b'{"a":1,"a":2}', b"[" * 1100 + b"]" * 1100, b"[" * 5000 + b"]" * 5000, b'"\x7f"', b'"\x1f"', b"\t[1]\r\n",
    b"\x0b[1]", b"\xa0[1]", "\ufeff[1]", "[1]\u2028", '"\ud800"', "\x85[1]",
])
def test_loads_is_json_loads_on_awkward_texts(raw: bytes | str) -> None:
    _assert_loads_as_json(raw)
    if isinstance(raw, bytes):
        _assert_loads_as_json(raw.decode("utf-8", "surrogateescape"))
        _assert_loads_as_json(bytearray(raw))


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"t": NaN}', "NaN is not a JSON value"), (b"[-Infinity]", "-Infinity is not a JSON value"),
    (b'["\\ud800"]', "lone surrogate"), (b'{"\\uDC00": 1}', "lone surrogate"), (b'"a\xed\xa0\x80"', "lone surrogate"),
    ('["\\ud83d"]', "lone surrogate"), ('["\udc00"]', "lone surrogate"),
    (b"[" + b"9" * 30 + b', "\\ud800"]', "lone surrogate"),
])
def test_loads_strict_refuses_what_is_not_json_text(raw: bytes | str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jsonfast.loads_strict(raw)


@pytest.mark.parametrize("raw", [
    b'["\\ud83d\\ude00", "\\uD83D\\uDE00"]', "[\"\U0001f600\"]".encode(), "[\"\ud55c\uad6d\uc5b4\"]".encode(),
    b"[" + b"9" * 30 + b", 1.5]", b"\xef\xbb\xbf[1]", b'{"a": "\xed\x95\x9c"}',
])
def test_loads_strict_reads_json_text_as_json_does(raw: bytes) -> None:
    assert _same(jsonfast.loads_strict(raw), json.loads(raw))


def _not_text(value: Any) -> bool:
    """Whether the decoded value holds NaN, an infinity, or a string with no UTF-8 (a lone surrogate)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, list):
        return any(_not_text(v) for v in value)
    if isinstance(value, dict):
        return any(_not_text(k) or _not_text(v) for k, v in value.items())
    return False


@SETTINGS
@given(_VALUES)
def test_loads_strict_is_loads_on_json_text_and_refuses_the_rest(value: Any) -> None:
    for text in _texts(value):
        raw = text.encode("utf-8", "surrogatepass")
        expected = json.loads(raw)
        if _not_text(expected):
            with pytest.raises(ValueError, match=r"NaN|Infinity|lone surrogate"):
                jsonfast.loads_strict(raw)
        else:
            assert _same(jsonfast.loads_strict(raw), expected)


def _floatless(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, list):
        return all(_floatless(v) for v in value)
    if isinstance(value, dict):
        return all(_floatless(v) for v in value.values())
    return True


@SETTINGS
@given(_VALUES)
def test_dumps_writes_json_document(value: Any) -> None:
    """Without floats: json's compact bytes exactly (UTF-8 text as json's ensure_ascii=False writes it), or, for
    what orjson refuses (big integers, lone surrogates), json's default ASCII bytes. With floats: the same values
    read back, NaN and the infinities as null (unless json wrote the whole document)."""
    ours = jsonfast.dumps(value)
    assert jsonfast.dumps_text(value) == ours.decode()
    if _floatless(value):
        try:
            utf8 = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            utf8 = None
        assert ours in (utf8, json.dumps(value, separators=(",", ":")).encode()), (value, ours)
        return
    if ours == json.dumps(value, separators=(",", ":")).encode():
        return  # handed to json (a big integer, a lone surrogate): json's bytes
    back = json.loads(ours)

    def finite(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [finite(x) for x in v]
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        return v

    assert _same(back, json.loads(json.dumps(finite(value)))), (value, ours)


def test_dumps_hands_orjsons_refusals_to_json() -> None:
    compact = {"separators": (",", ":")}
    for value in ({1: "a", 2: "b"}, [2**64], {"a": -(2**63) - 1}, ["\ud800"], [[[[[]]]]] * 2,
                  json.loads("[" * 300 + "]" * 300), {None: 1, True: 2, 1.5: 3}):
        assert jsonfast.dumps(value) == json.dumps(value, **compact).encode()
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonfast.dumps(loop)
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonfast.dumps({"a": object()})


@dataclasses.dataclass
class _Point:
    x: int


def test_dumps_sends_dates_and_dataclasses_to_default_as_json_does() -> None:
    """orjson would write datetimes in its own form and dataclasses as objects; json hands both to `default`."""
    from django.core.serializers.json import DjangoJSONEncoder

    when = datetime.datetime(2026, 12, 7, 8, 30, 1, 123456, tzinfo=datetime.UTC)
    value = {"when": when, "day": when.date(), "at": when.time(), "d": decimal.Decimal("1.10"),
             "u": uuid.UUID(int=7), "n": [1, "é"]}
    for default, extra in ((str, {"p": _Point(3)}), (DjangoJSONEncoder().default, {})):
        expected = json.dumps({**value, **extra}, separators=(",", ":"), default=default, ensure_ascii=False)
        assert jsonfast.dumps({**value, **extra}, default) == expected.encode()
    for refused in ({"when": when}, {"p": _Point(3)}):
        with pytest.raises(TypeError):
            jsonfast.dumps(refused)
    with pytest.raises(TypeError):
        jsonfast.dumps({"p": _Point(3)}, DjangoJSONEncoder().default)

"""The audit chain's canonical texts written by orjson (audit.verify.canonical_text_plain, through
audit.chain.canonical_fast and json_text) are json's bytes exactly, for every value the check lets through: a MAC
made now equals one made before, and an entry written before verifies after."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import chain
from audit.verify import canonical_text, canonical_text_plain

SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_FLOATS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 1e-4, 9.999999999999999e-05, 0.00010000000000000002,
                                                 1e16, 9999999999999998.0, 1e15, 123456789012345.67, 0.1, 1e-7,
                                                 1e22, 5e-324, 2.0**53, 102.0, 1.5]),
                    st.floats(min_value=1e-4, max_value=1e16), st.floats(min_value=-1e16, max_value=-1e-4))
_TEXT = st.text(st.characters(codec=None), max_size=10)  # surrogates, controls, astral, U+2028, DEL
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), _FLOATS, _TEXT)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(_TEXT, inner, max_size=5)), max_leaves=25)


def _json(value: Any) -> str | None:
    try:
        return canonical_text(value)
    except (ValueError, TypeError):
        return None


@SETTINGS
@given(_VALUES)
def test_canonical_fast_is_json_canonical_text(value: Any) -> None:
    expected = _json(value)
    if expected is None:
        return
    assert chain.canonical_fast(value) == expected
    if chain._json_native(value, 0, True):
        assert canonical_text_plain(value) == expected
    try:
        encoded = expected.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8, and no bytes either
        encoded = None
    if encoded is not None:
        assert chain.canonical_fast_bytes(value) == encoded


@SETTINGS
@given(st.dictionaries(_TEXT, _VALUES, max_size=6))
def test_json_text_is_as_before(value: Any) -> None:
    """json_text's (value, text): the text is json's canonical text of the value it returns, as it was."""
    if _json(value) is None:
        return
    normal, text = chain.json_text(value)
    assert text == canonical_text(normal)


def test_plain_floats_are_written_as_repr_writes_them() -> None:
    """The float rule behind canonical_text_plain: a float the check calls plain has no exponent in repr, and orjson
    writes its repr's very characters (the same shortest digits). Random bit patterns and decimal-looking values."""
    rng = random.Random(7)
    values = [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(200_000)]
    values += [rng.uniform(-1e6, 1e6) for _ in range(50_000)]
    values += [round(rng.uniform(-1e4, 1e4), rng.randint(0, 8)) for _ in range(50_000)]
    values += [rng.random() * 10.0 ** rng.randint(-6, 17) for _ in range(50_000)]
    values += [m * 10.0**e for e in range(-8, 18) for m in (1, 1.5, 9.999999999999999, 2.2250738585072014)]
    plain = 0
    for value in values:
        if chain._json_native(value, 0, True):
            plain += 1
            assert "e" not in repr(value), value
            assert orjson.dumps(value).decode() == repr(value), value
            assert canonical_text_plain([value, {"f": value}]) == canonical_text([value, {"f": value}])
        elif math.isfinite(value):
            assert chain.canonical_fast(value) == canonical_text(value)
    assert plain > 140_000


def test_keys_sort_by_code_point_as_json_sorts_them() -> None:
    keys = ["b", "a", "B", "\u00e9", "e\u0301", "\U0001f600", "\uffff", "\u2028", "", " ", "a\x00", "a", "\x7f",
            "\U00010000", "\ud7ff", "\ue000", "10", "9"]
    value = {k: i for i, k in enumerate(keys)}
    assert canonical_text_plain(value) == canonical_text(value)
    assert canonical_text_plain({"x": value, "w": [value]}) == canonical_text({"x": value, "w": [value]})


def test_what_orjson_refuses_is_jsons_text() -> None:
    for value in ({"n": 2**64}, {"n": -(2**63) - 1}, ["\ud800"], {"k": "\udfff x"}):
        assert canonical_text_plain(value) == canonical_text(value)
        assert chain.canonical_fast(value) == canonical_text(value)


@SETTINGS
@given(st.binary(min_size=0, max_size=150), st.binary(max_size=3000))
def test_a_mac_from_the_keys_state_is_hmac_sha256(key: bytes, data: bytes) -> None:
    """chain.mac_hex (a copy of the key's HMAC state) is hmac.digest's MAC, for keys shorter and longer than a
    SHA-256 block, the same key used again, and the content hash of a payload as the canonical text's MAC."""
    import hmac

    from audit.rows import content_hash

    assert chain.mac_hex(key, data) == hmac.digest(key, data, "sha256").hex()
    assert chain.mac_hex(key, data + b"x") == hmac.digest(key, data + b"x", "sha256").hex()
    payload = {"messages": [{"role": "user", "content": data.decode("latin-1")}], "system": None}
    assert content_hash(key, payload) == hmac.digest(key, canonical_text(payload).encode(), "sha256").hex()
    assert chain.keyed_hash(key, "p") == hmac.digest(key, b"p", "sha256").hex()

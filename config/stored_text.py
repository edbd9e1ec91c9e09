"""Text as PostgreSQL can store it: no NUL (U+0000: `text` refuses the character and `jsonb` its \\u0000 escape)
and no lone surrogate (U+D800-U+DFFF alone: no UTF-8 encodes it). Either, in a value a client or a provider
controls (a User-Agent, an OIDC claim, a provider's error text), would make a record that no retry can ever
commit; such characters are stored as U+FFFD, the replacement character, instead (docs/decisions.md)."""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def stored_text(value: str) -> str:
    """`value` with each NUL and lone surrogate replaced by U+FFFD (the same str when it holds none)."""
    return _UNSTORABLE.sub(REPLACEMENT, value) if _UNSTORABLE.search(value) else value


def stored(value: Any) -> Any:
    """`value` with stored_text applied to every str in it, keys of dicts included (dicts, lists and tuples are
    copied; anything else is returned as it is)."""
    kind = type(value)
    if kind is str:
        return stored_text(value)
    if kind is dict:
        return {stored(k): stored(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return kind(stored(v) for v in value)
    if isinstance(value, str):  # a str subclass (SafeString, a lazy text made str)
        return stored_text(str(value))
    return value


def unstorable(text: str) -> bool:
    """Does `text` (a str, or the JSON text of a value) hold something stored_text would replace: a NUL, its JSON
    escape, or a lone surrogate? The escape's test can be true of a backslash the client wrote before `u0000`: the
    caller then makes the value again through `stored` and finds nothing to replace."""
    return "\\u0000" in text or _UNSTORABLE.search(text) is not None


def nul_at(value: Any, path: str = "") -> str | None:
    """The path (`messages.0.content`) of the first str in `value` (a key or a value) holding a NUL, or None: for
    a refusal that names the field, where what is stored must be what the client sent."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return where
        elif isinstance(node, dict):
            for key, item in reversed(node.items()):
                name = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return name
                stack.append((name, item))
        elif isinstance(node, list | tuple):
            stack.extend((f"{where}.{index}" if where else str(index), item)
                         for index, item in reversed(list(enumerate(node))))
    return None

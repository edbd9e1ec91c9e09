"""The head of an HTTP/1.1 answer, line by line as http.client reads it (inference/providers/http1.py): its status line,
its header lines, their merging into the answer's headers, and the few headers that frame its body."""

from __future__ import annotations

import http.client

# The headers that frame a body or keep a connection (what http1's `Answer._frame` reads): (name, its bytes)
_FRAMING = tuple((name, name.encode()) for name in ("connection", "keep-alive", "transfer-encoding", "content-length"))


def framing_headers(head: bytes) -> dict[str, str] | None:
    """The headers among `head`'s lines (each with its CRLF; no bare LF) that `Answer._frame` reads, by lowercased
    name, as reading every line would give them; None when that takes reading every line: a continued (folded)
    line, or a framing header's name that is not alone at its line's start followed by its colon (sent twice,
    spaced, in another line's name). A framing name anywhere after a line's first colon is part of a value."""
    lower = b"\n" + head.lower()  # a line's start: after a LF, at lower's index k for head's k - 1
    if b"\n " in lower or b"\n\t" in lower:
        return None
    framing: dict[str, str] = {}
    for name, text in _FRAMING:
        at = lower.find(text)
        found = -1
        while at >= 0:
            line = lower.rfind(b"\n", 0, at)
            if lower.find(b":", line, at) < 0:  # in the line's name
                if found >= 0 or line != at - 1 or lower[at + len(text):at + len(text) + 1] != b":":
                    return None
                found = at
            at = lower.find(text, at + 1)
        if found >= 0:
            start = found + len(text)  # the value's start in head
            framing[name] = head[start:head.index(b"\r\n", start)].decode("iso-8859-1").strip()
    return framing


def merged(names: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """The headers of `names` by their first spelling, the values of a name sent again joined with ", "; and each
    lowercased name's first spelling."""
    headers: dict[str, str] = {}
    lower: dict[str, str] = {}
    for name, value in names:
        key = name.lower()
        if key in lower:
            headers[lower[key]] += f", {value}"
        else:
            lower[key] = name
            headers[name] = value
    return headers, lower


def header_line(names: list[tuple[str, str]], line: bytes) -> None:
    """Add a header line (its line end or not) to `names`: (name, value), or the value of the last one continued."""
    text = line.decode("iso-8859-1").rstrip("\r\n")
    if text[:1] in (" ", "\t") and names:  # an obsolete folded continuation line
        name, value = names[-1]
        names[-1] = (name, f"{value} {text.strip()}")
        return
    name, _, value = text.partition(":")
    names.append((name.strip(), value.strip()))


def status_line(line: bytes) -> tuple[int, int]:
    """(version: 10 or 11, status) of a status line, judged as http.client judges it."""
    text = line.decode("iso-8859-1")
    parts = text.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise http.client.BadStatusLine(text)
    version_text, status_text = parts[0], parts[1]
    try:
        status = int(status_text)
        if status < 100 or status > 999:
            raise ValueError
    except ValueError:
        raise http.client.BadStatusLine(text) from None
    if version_text in ("HTTP/1.0", "HTTP/0.9"):
        return 10, status
    if version_text.startswith("HTTP/1."):
        return 11, status
    raise http.client.UnknownProtocol(version_text)

"""The journal's line format (inference.record_journal): `~<generation> <crc32> <record>`, and reading a segment's
records back, which stops where the last rewind's lines end."""

from __future__ import annotations

import zlib


def journal_line(generation: int, record: str | bytes) -> bytes:
    """One journal line: `~<generation> <crc32 of the record> <record>` (the record on one line; given as text or
    as its UTF-8)."""
    payload = (record if isinstance(record, bytes) else record.encode()).replace(b"\n", b" ")
    return b"~%x %08x %s\n" % (generation, zlib.crc32(payload, generation & 0xFFFFFFFF), payload)


def journal_records(data: bytes) -> tuple[list[str], int]:
    """The records a journal file holds, in order, and how many lines were torn (unreadable: killed mid-write).

    Lines are read from the start while they belong to the first line's generation: the first line that does
    not start with `~` (the rewound mark, the preallocated zeros, a leftover half line) or carries an older
    generation (a leftover line from before the last rewind) ends the journal. A line whose CRC does not match is
    torn and skipped. A file of plain lines (written before segments were preallocated) is read as it was."""
    if data[:1] not in (b"~", b"\n", b"\0", b""):  # plain lines never start with the rewound mark or zeros
        return [line.decode(errors="replace") for line in data.splitlines() if line.strip()], 0
    records: list[str] = []
    torn = 0
    generation: int | None = None
    for line in data.split(b"\n"):
        if not line.startswith(b"~"):
            break
        parts = line[1:].split(b" ", 2)
        try:
            line_generation, crc = int(parts[0], 16), int(parts[1], 16)
            payload = parts[2]
        except (IndexError, ValueError):
            torn += 1
            continue
        if generation is None:
            generation = line_generation
        elif line_generation != generation:
            break
        if zlib.crc32(payload, line_generation & 0xFFFFFFFF) != crc:
            torn += 1
            continue
        records.append(payload.decode())
    return records, torn

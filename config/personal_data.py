"""The personal-data registry: each app contributes the export, erasure and retention handlers of its own data.

GDPR jobs (audit.gdpr) and retention call what is registered here and import no other app's models; each app
registers its handlers in its AppConfig.ready(). It lives in config (the shared foundation), so no app imports
another to register.

- An ExportPart writes one file of a subject's export (JSON) and returns how many items it wrote.
- An ExportFiles writes any number of files into its own folder of the export (attachments' bytes, one readable
  transcript per conversation) through an ExportFolder, which keeps names unique and dates each file.
- An ErasureStep erases up to `limit` units of a subject's data in the caller's transaction and returns its counts
  (its own name's count, plus any extra counts, e.g. messages with conversations). The job commits each call with
  its counts and repeats it until it returns fewer than `limit` units; steps run in `order`, and their names are
  stored in the job (a resumed job continues at the first unfinished step), so a name never changes.
- An erasure start hook runs when a deletion is requested, before any step (refuse the subject's credentials).
- A RetentionStep deletes what the tenant's retention period has expired and returns its counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Protocol

Progress = Callable[[float], None]  # fraction done (0..1) of a long export part: renews the job's lease


@dataclass(frozen=True)
class ExportPart:
    filename: str
    description: str
    order: int
    write: Callable[[int, IO[bytes], Progress], int]


class ExportFolder(Protocol):
    """Where an ExportFiles part writes: its own folder of the export archive."""

    def add(self, name: str, data: bytes | IO[bytes], *, modified: datetime) -> str:
        """Write one file dated `modified`; returns its path in the archive (`name` made safe, and unique in the
        folder by a numeric suffix if taken)."""


@dataclass(frozen=True)
class ExportFiles:
    folder: str
    description: str
    order: int
    write: Callable[[int, ExportFolder, Progress], int]


@dataclass(frozen=True)
class ErasureStep:
    name: str
    order: int
    erase: Callable[[int, int], dict[str, int]]


@dataclass(frozen=True)
class RetentionStep:
    name: str
    order: int
    run: Callable[[Any], dict[str, int]]


_starts: dict[str, Callable[[int], None]] = {}
_exports: dict[str, ExportPart] = {}
_export_files: dict[str, ExportFiles] = {}
_erasures: dict[str, ErasureStep] = {}
_retention: dict[str, RetentionStep] = {}


def register_erasure_start(name: str, hook: Callable[[int], None]) -> None:
    """`hook(subject_id)` runs in the transaction that accepts a deletion request (e.g. refuse the subject's
    keys and sessions from then on)."""
    _starts[name] = hook


def erasure_start_hooks() -> list[Callable[[int], None]]:
    return [_starts[name] for name in sorted(_starts)]


def register_export(part: ExportPart) -> None:
    _exports[part.filename] = part


def register_export_files(part: ExportFiles) -> None:
    _export_files[part.folder] = part


def register_erasure(step: ErasureStep) -> None:
    _erasures[step.name] = step


def register_retention(step: RetentionStep) -> None:
    _retention[step.name] = step


def export_parts() -> list[ExportPart]:
    return sorted(_exports.values(), key=lambda p: (p.order, p.filename))


def export_file_parts() -> list[ExportFiles]:
    return sorted(_export_files.values(), key=lambda p: (p.order, p.folder))


def erasure_steps() -> list[ErasureStep]:
    return sorted(_erasures.values(), key=lambda s: (s.order, s.name))


def retention_steps() -> list[RetentionStep]:
    return sorted(_retention.values(), key=lambda s: (s.order, s.name))


def json_array(stream: IO[bytes], items: Iterable[Any]) -> int:
    """Write `items` as a JSON array, one item a line, without holding them all; returns how many."""
    stream.write(b"[\n")
    count = 0
    for item in items:
        if count:
            stream.write(b",\n")
        stream.write(json.dumps(item, ensure_ascii=False, default=str).encode())
        count += 1
    stream.write(b"\n]\n")
    return count


def json_object(stream: IO[bytes], value: Any) -> int:
    stream.write(json.dumps(value, default=str, indent=1, ensure_ascii=False).encode())
    return 1

"""The writer thread is woken only when a record changes what it does (inference.recorder: `_enqueue`, `_lead`), and
no record is ever stranded by a wake-up left out: journaled records alone, handed over one by one from one thread
while the writer goes idle and lingers in turn, all reach PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inference.recorder import BatchWriter
from tests.inference.conftest import string_codec

Table = tuple[Callable[[list[str]], list[str]], Callable[[], set[str]]]


@pytest.fixture
def pg_table(db: Any) -> Iterator[Table]:
    """A table of the test database, written by the writer thread on its own connection (committed): `write` for
    a BatchWriter, and what the table holds."""
    import psycopg
    from django.db import connection
    from psycopg import sql

    config = connection.settings_dict
    params: dict[str, Any] = {"host": config.get("HOST") or "127.0.0.1", "port": config.get("PORT") or 5432,
                              "user": config.get("USER") or "postgres", "dbname": config["NAME"], "autocommit": True}
    if config.get("PASSWORD"):
        params["password"] = config["PASSWORD"]
    table = sql.Identifier(f"wakeups_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(**params) as admin:
        admin.execute(sql.SQL("CREATE TABLE {} (item text PRIMARY KEY)").format(table))

    def write(batch: list[str]) -> list[str]:
        with psycopg.connect(**params) as conn, conn.cursor() as cursor:
            cursor.executemany(sql.SQL("INSERT INTO {} (item) VALUES (%s) ON CONFLICT DO NOTHING").format(table),
                               [(item,) for item in batch])
        return []

    def rows() -> set[str]:
        with psycopg.connect(**params) as conn:
            return {row[0] for row in conn.execute(sql.SQL("SELECT item FROM {}").format(table))}

    yield write, rows
    with psycopg.connect(**params) as admin:
        admin.execute(sql.SQL("DROP TABLE {}").format(table))


def test_journaled_records_alone_from_one_thread_all_reach_postgresql(background: Any, pg_table: Table) -> None:
    write, rows = pg_table
    background.ATRIUM_RECORDER_LINGER_MS = 0
    background.ATRIUM_RECORDER_JOURNALED_LINGER_MS = 20
    writer: BatchWriter[str] = BatchWriter(f"w{uuid.uuid4().hex[:6]}", write, string_codec())
    writer._idle_s = 3600  # an idle writer sleeps until it is woken: a wake-up left out strands the record
    items: list[str] = []
    # Pauses shorter and longer than the linger: records join a lingering batch, find the writer busy writing one,
    # or find it idle.
    for n, pause in enumerate([0, 0, 0.005, 0.05, 0, 0.1, 0.03, 0, 0, 0.2] * 3):
        items.append(f"a:{n}")
        writer.submit_journaled(items[-1])
        time.sleep(pause)
    deadline = time.monotonic() + 60
    while rows() != set(items) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rows() == set(items)
    assert not writer._queue and not writer._busy


def test_a_journaled_record_joining_a_lingering_batch_does_not_wake_the_writer(background: Any,
                                                                                pg_table: Table) -> None:
    write, rows = pg_table
    background.ATRIUM_RECORDER_LINGER_MS = 0
    background.ATRIUM_RECORDER_JOURNALED_LINGER_MS = 60_000
    writer: BatchWriter[str] = BatchWriter(f"w{uuid.uuid4().hex[:6]}", write, string_codec())
    wakes: list[str] = []
    notify_all = writer._cond.notify_all

    def counted() -> None:
        wakes.append(threading.current_thread().name)
        notify_all()

    writer._cond.notify_all = counted  # type: ignore[method-assign]
    writer.submit_journaled("a:0")  # the writer was idle: woken, it lingers for more journaled records
    assert len(wakes) == 1
    for n in range(1, 21):
        writer.submit_journaled(f"a:{n}")  # nobody waits for these: the lingering writer is left alone
    assert len(wakes) == 1
    ticket = writer.submit("a:waits")  # a caller waiting for its commit wakes it: the linger is cut short
    assert len(wakes) == 2
    assert ticket.wait(30)
    assert rows() == {f"a:{n}" for n in range(21)} | {"a:waits"}


def test_a_full_batch_of_journaled_records_wakes_the_writer(background: Any, pg_table: Table) -> None:
    write, rows = pg_table
    background.ATRIUM_RECORDER_JOURNALED_LINGER_MS = 60_000
    background.ATRIUM_RECORDER_BATCH = 5
    writer: BatchWriter[str] = BatchWriter(f"w{uuid.uuid4().hex[:6]}", write, string_codec())
    writer._idle_s = 3600
    items = [f"a:{n}" for n in range(5)]
    for item in items:
        writer.submit_journaled(item)
    deadline = time.monotonic() + 60  # the linger (60 s) is not waited out: the full batch is written at once
    while rows() != set(items) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rows() == set(items)


def test_journaled_lines_are_counted_by_the_writer_not_the_caller(background: Any) -> None:
    """atrium_recorder_journaled_total counts the lines made durable; the writer thread adds them (one increment
    for all it finds), not the request threads: none is counted by submit_journaled, all of them soon after by
    the writer, even while the database takes nothing."""
    from prometheus_client import REGISTRY

    def journaled() -> float:
        return REGISTRY.get_sample_value("atrium_recorder_journaled_total") or 0.0

    database_open = threading.Event()

    def write(batch: list[str]) -> list[str]:
        return [] if database_open.is_set() else batch

    writer: BatchWriter[str] = BatchWriter(f"j{uuid.uuid4().hex[:6]}", write, string_codec())
    writer._idle_s = 0.05
    count = writer._journal_count
    writer._journal_count = lambda: None  # type: ignore[method-assign]  # the writer's counting held back
    before = journaled()
    for n in range(8):
        writer.submit_journaled(f"a:{n}")
    assert journaled() == before  # the callers counted nothing
    writer._journal_count = count  # type: ignore[method-assign]
    deadline = time.monotonic() + 10
    while journaled() < before + 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert journaled() == before + 8  # counted although the database has taken nothing
    database_open.set()
    assert writer.flush(timeout=30)
    assert journaled() == before + 8

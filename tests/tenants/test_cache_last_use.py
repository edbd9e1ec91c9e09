"""An API key's last use (access.services._last_used_record) in a process's key cache: the requests that find the
cached stamp stale together write it once (issue 18: the first calls of a burst each wrote it, each from its own
thread's new database connection), and a failed write leaves the next request to write."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from tests.tenants.test_cache_invalidation import (  # noqa: F401 - fixtures
    _listener_stopped_afterwards,
    authenticate,
    caches_on,
    eventually,
    key_user,
    served_from_memory,
)


def _stale_stamp(prefix: str, raw: str) -> Any:
    """The key's row and its cached copy as they are once LAST_USED_WRITE_INTERVAL has passed since its last use."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from access.services import LAST_USED_WRITE_INTERVAL, ApiKey, _key_cache

    old = datetime.now(UTC) - 2 * LAST_USED_WRITE_INTERVAL
    with schema_context("alpha"):  # the column sends no invalidation: the cached row keeps its stamp
        ApiKey.objects.filter(prefix=prefix).update(last_used_at=old)

    def stamped_stale() -> bool:  # a late notification of the set-up's writes may empty the entry: cache it again
        if _key_cache.peek("alpha", prefix) is None:
            served_from_memory(lambda: authenticate(raw))
        return _key_cache.update("alpha", prefix, lambda rows: replace(rows, key={**rows.key, "last_used_at": old}))

    eventually(stamped_stale, "the cached stamp made stale")
    return old


def test_requests_that_see_a_stale_last_use_together_write_it_once(key_user: tuple[Any, str],  # noqa: F811
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The requests of one process that find the cached last use older than the interval at the same moment (a
    burst's first calls, one per request thread) leave the write to the first: one UPDATE, not one each (each
    from its own thread's database connection); the cached stamp is this process's write."""
    import threading
    from datetime import UTC, datetime

    from access import services

    row, raw = key_user
    with schema_context("alpha"):
        served_from_memory(lambda: authenticate(raw))
    _stale_stamp(row.prefix, raw)
    writes: list[bool] = []
    barrier = threading.Barrier(8)

    def request() -> None:  # what _live_key_rows does once it has found the cached stamp stale
        try:
            barrier.wait(10)
            with schema_context("alpha"):
                writes.append(services._last_used_record(row.pk, row.prefix, "alpha", datetime.now(UTC)))
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(writes) == 8 and writes.count(True) == 1, writes
    with schema_context("alpha"):
        stored = services.ApiKey.objects.get(pk=row.pk).last_used_at
    assert services._key_cache.peek("alpha", row.prefix).key["last_used_at"] == stored


def test_a_failed_last_use_write_leaves_the_next_request_to_write(key_user: tuple[Any, str],  # noqa: F811
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The stamp a request claims before its write is put back when the write fails (the error reaches the
    caller as before), so the next request writes; a request that finds the stamp fresh writes nothing."""
    from django.db import OperationalError

    from access import services

    row, raw = key_user
    with schema_context("alpha"):
        served_from_memory(lambda: authenticate(raw))
    old = _stale_stamp(row.prefix, raw)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(services.ApiKey.objects, "filter", refused)
        with pytest.raises(OperationalError):
            authenticate(raw)
    assert services._key_cache.peek("alpha", row.prefix).key["last_used_at"] == old
    with schema_context("alpha"), CaptureQueriesContext(connection) as queries:
        assert authenticate(raw).last_used_at > old
        authenticate(raw)
    updates = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE") and "access_apikey" in q["sql"]]
    assert len(updates) == 1

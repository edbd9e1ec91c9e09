"""The API lane's database connection check (config.api_lane._close_if_unusable_or_obsolete, which request_started
and request_finished run for each /v1 call): it closes a connection exactly where Django's
close_if_unusable_or_obsolete does."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

pytestmark = pytest.mark.django_db


def test_the_lanes_connection_check_closes_what_djangos_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane's close_if_unusable_or_obsolete (config.api_lane, without get_autocommit's call) closes a connection
    in the states Django's closes it, and keeps it in the others: autocommit left off, an error with the connection
    unusable, an error with the connection usable but past its age (the age is still checked after the error)."""
    from django.db import DEFAULT_DB_ALIAS, connections

    from config.api_lane import _close_if_unusable_or_obsolete

    connection = connections.create_connection(DEFAULT_DB_ALIAS)  # its own, outside the test's transaction

    def state(setup: Callable[[], None]) -> tuple[bool, bool, bool]:
        connection.ensure_connection()
        connection.close_at = None
        connection.errors_occurred = False
        setup()
        _close_if_unusable_or_obsolete(connection)
        closed = connection.connection is None
        result = (closed, bool(connection.errors_occurred), bool(connection.health_check_done))
        connection.close()
        connection.close_at = None
        connection.errors_occurred = False
        return result

    def past_age() -> None:
        connection.close_at = time.monotonic() - 1

    def error_then_age() -> None:
        connection.errors_occurred = True
        connection.close_at = time.monotonic() - 1

    def error_usable() -> None:
        connection.errors_occurred = True

    def error_unusable() -> None:
        connection.errors_occurred = True
        monkeypatch.setattr(connection, "is_usable", lambda: False)

    def autocommit_off() -> None:
        connection.set_autocommit(False)

    assert state(lambda: None) == (False, False, False)
    assert state(past_age)[0] is True
    assert state(error_then_age)[0] is True
    assert state(error_usable) == (False, False, True)
    assert state(autocommit_off)[0] is True
    assert state(error_unusable)[0] is True
    connection.close()

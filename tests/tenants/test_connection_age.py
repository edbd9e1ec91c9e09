"""config/db/base.py: persistent connections opened together do not all reach CONN_MAX_AGE together (issue 18:
a worker's threads reconnected in the same second every CONN_MAX_AGE, a spike in the c=32 tail)."""

from __future__ import annotations

import copy
import time

import pytest
from django.db import connections


@pytest.mark.django_db
def test_connections_opened_together_are_closed_at_spread_times() -> None:
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict["CONN_MAX_AGE"] = 60
    ages: list[float] = []
    for _ in range(12):
        wrapper = type(connections["default"])(settings_dict, alias="default")
        wrapper.connect()
        try:
            assert wrapper.close_at is not None
            ages.append(wrapper.close_at - time.monotonic())
        finally:
            wrapper.close()
    assert all(44.0 < age <= 60.0 for age in ages)  # within the last quarter of CONN_MAX_AGE
    assert max(ages) - min(ages) > 1.0  # not one instant for all


@pytest.mark.django_db
def test_a_connection_without_persistence_is_unchanged() -> None:
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    for max_age, expected in ((0, 0.0), (None, None)):
        settings_dict["CONN_MAX_AGE"] = max_age
        wrapper = type(connections["default"])(settings_dict, alias="default")
        wrapper.connect()
        try:
            if expected is None:
                assert wrapper.close_at is None
            else:
                assert wrapper.close_at is not None and abs(wrapper.close_at - time.monotonic()) < 1.0
        finally:
            wrapper.close()

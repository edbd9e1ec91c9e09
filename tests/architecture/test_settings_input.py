"""A malformed setting in the environment stops the process at start with one line naming the variable and the
type it needs (config/env.py), not a traceback; a well-formed one is read as before."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env


@pytest.mark.parametrize(("variable", "value", "kind"), [("ATRIUM_RECORDER_JOURNALED_LINGER_MS", "abc", "float"),
                                                         ("ATRIUM_RECORDER_BATCH", "1.5", "int"),
                                                         ("ATRIUM_QUOTA_RESERVATION_TTL_S", "soon", "float"),
                                                         ("ATRIUM_WARM_CLIENTS", "ture", "bool")])
def test_a_malformed_number_stops_the_process_with_one_clear_line(variable: str, value: str, kind: str) -> None:
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          env=subprocess_env(**{variable: value}), timeout=120, check=False)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"atrium: {variable} is not a valid {kind} value; fix it or unset it."]


@pytest.mark.parametrize(("value", "read"), [("yes", True), ("On", True), ("2", True), ("off", False), ("0", False),
                                             ("", False)])
def test_a_well_formed_boolean_is_read(value: str, read: bool) -> None:
    from config.env import env

    assert env.parse_value(value, bool) is read


def test_a_well_formed_number_is_read() -> None:
    code = "from django.conf import settings; print(settings.ATRIUM_RECORDER_JOURNALED_LINGER_MS)"
    done = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env=subprocess_env(ATRIUM_RECORDER_JOURNALED_LINGER_MS="12.5"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "12.5"

"""Issue 14, "Done means": a schemathesis run over the OpenAPI schema (/api/schema/) against a live gunicorn, bounded
(a few hundred generated requests), with 0 server errors. Every operation is called with a real API key, so the
generated bodies reach the views (and the simulator behind them), not only the authentication layer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, WebServer

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 25


def test_generated_requests_never_get_a_server_error(web: WebServer, clean: None, committed_user: Any,
                                                     tmp_path: Path) -> None:
    _user, key = committed_user("alpha", "power_user")
    report = tmp_path / "junit.xml"
    # Fetched here with a generous timeout (the first request builds the schema, slow on a loaded machine), then
    # given to schemathesis as a file with the server as its base URL.
    schema = httpx.get(f"{web.url('alpha.localhost')}/api/schema/?format=json", headers={"X-API-Key": key},
                       timeout=300)
    assert schema.status_code == 200, schema.text[:500]
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(schema.text)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--no-color", "run", str(schema_file),
         "--url", web.url("alpha.localhost"),
         "--checks", "not_a_server_error", "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "1414",
         "--workers", "1", "--request-timeout", "60",
         "--header", f"X-API-Key: {key}", "--report", "junit", "--report-junit-path", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    output = done.stdout + done.stderr
    print(output[-1500:])  # the run's summary (generated cases per operation), for `pytest -s`
    assert done.returncode == 0, output[-4000:]
    generated = re.search(r"Test cases:\s*(\d+) generated", output)
    assert generated is None or int(generated.group(1)) >= 200, output[-1500:]  # a few hundred requests
    junit = report.read_text()
    cases = junit.count("<testcase")
    assert cases >= 8, junit[:2000]  # every operation of the schema was exercised
    assert "<failure" not in junit and "<error" not in junit, junit[-4000:]

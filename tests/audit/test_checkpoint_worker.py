"""The checkpoint beat task in a real Celery worker, on committed data (no test transaction around it)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction

from audit.platform.models import ChainCheckpoint
from audit.services import audit_record


@pytest.mark.slow
def test_the_beat_task_runs_in_a_real_worker(celery_worker_process: Any, committed: None,
                                              tenants: dict[str, Any]) -> None:
    """The scheduled task, sent from the public schema as beat sends it, checkpoints every chain (committed)."""
    from django.conf import settings as django_settings
    from django_tenants.utils import tenant_context

    from audit.platform.tasks import checkpoint_all as task

    assert django_settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]["task"] == task.name
    tenant = tenants["beta"]
    with tenant_context(tenant), transaction.atomic():
        entry = audit_record(event_type="worker_checkpoint_probe")
    connection.set_schema_to_public()
    task.apply_async(queue=celery_worker_process.queue)  # ignore_result: wait for its effect instead
    # written by the worker (its own settings: the test settings' directory): the row, then at commit the line
    path = Path(os.environ.get("ATRIUM_AUDIT_CHECKPOINT_DIR")
                or f"{django_settings.MEDIA_ROOT}-audit-checkpoints") / f"{tenant.schema_name}.jsonl"

    def written() -> tuple[Any, list[dict[str, Any]]]:
        row = ChainCheckpoint.objects.filter(chain=tenant.schema_name, seq__gte=entry.seq).order_by("-seq").first()
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return row, [line for line in lines if row is not None and line["signature"] == row.signature]

    row, lines = written()
    deadline = time.monotonic() + 60  # a bound on waiting, not a performance limit
    while not lines and time.monotonic() < deadline:
        time.sleep(0.2)
        row, lines = written()
    assert row is not None and row.reason == "scheduled" and row.seq >= entry.seq
    assert lines and lines[0]["seq"] == row.seq and lines[0]["head_mac"] == row.head_mac

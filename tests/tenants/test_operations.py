"""Probes, fail-fast production settings, and tenant context inside a real Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django_tenants.utils import schema_context

from config.redis import redis_client
from tests.conftest import ROOT


def test_healthz_is_up(client_a: Any) -> None:
    response = client_a.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_every_dependency(public_client: Any) -> None:
    response = public_client.get("/readyz")
    assert response.status_code == 200
    assert {k: v["ok"] for k, v in response.json()["checks"].items()} == {
        "database": True, "redis": True, "broker": True,
    }


def test_readyz_is_503_when_redis_is_unreachable(public_client: Any) -> None:
    # A port nothing listens on: Redis "down" for real, not a mock of it.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        redis_client.cache_clear()
        try:
            response = public_client.get("/readyz")
        finally:
            redis_client.cache_clear()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"ATRIUM_ENCRYPTION_KEYS": "k"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "s"}, "ATRIUM_ENCRYPTION_KEYS"),
    ],
)
def test_production_settings_refuse_to_start_without_secrets(env: dict[str, str], missing: str) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "ATRIUM_ENCRYPTION_KEYS"}}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings.production")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=clean, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert lines == [f"atrium: {missing} is not set; production refuses to start without it."]


@pytest.mark.slow
def test_task_sent_in_tenant_runs_in_that_tenants_schema(celery_worker_process: Any, committed: None) -> None:
    from tenants.tasks import schema_probe

    with schema_context("alpha"):
        result_a = schema_probe.apply_async(queue=celery_worker_process.queue)
    with schema_context("beta"):
        result_b = schema_probe.apply_async(queue=celery_worker_process.queue)
    result_public = schema_probe.apply_async(queue=celery_worker_process.queue)
    assert result_a.get(timeout=60) == "alpha"
    assert result_b.get(timeout=60) == "beta"
    assert result_public.get(timeout=60) == "public"
    assert connection.schema_name == "public"
    redis_client().ping()


def test_beat_schedule_loads_with_tenants(tenants: Any) -> None:
    """The tenant-aware database scheduler, as `celery beat` runs it (its own process: it manages its own
    connections), sees each entry once — it raised on duplicates while the periodic task table was shared."""
    import json

    from tests.conftest import ROOT, subprocess_env

    script = (
        "import django, json; django.setup()\n"
        "from django.conf import settings; from django.utils.module_loading import import_string\n"
        "from django_celery_beat.models import PeriodicTask\n"
        "from config.celery import app\n"
        "cls = import_string(settings.CELERY_BEAT_SCHEDULER.replace(':', '.'))\n"
        "s = cls(app=app, lazy=True); s.setup_schedule()\n"
        "print(json.dumps([[m.name for m in s.enabled_models()], list(s.schedule),\n"
        "                  sorted(PeriodicTask.objects.values_list('name', flat=True))]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    enabled, scheduled, stored = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(enabled) == len(set(enabled)), enabled  # each entry once
    # Every platform entry is stored; django-celery-beat only loads crontab entries due within two hours of
    # now, so which of those are "enabled" depends on the time of day: the interval ones always are.
    assert {"retention@__all_tenants_only__", "export-expiry@__all_tenants_only__", "provider-health@public",
            "gdpr-recover@public"} <= set(stored)
    assert {"provider-health@public", "gdpr-recover@public"} <= set(enabled) & set(scheduled)


def test_beat_entry_for_every_tenant_runs_in_each_tenants_schema(
        tenants: dict[str, Any], committed: None, celery_worker_process: Any) -> None:
    """A schedule entry without `tenant_schemas` (export expiry here; retention and batch results expiry alike)
    reaches every tenant, and its task runs in that tenant's schema: sent by the beat scheduler as `celery beat`
    runs it (its own process), executed by a real worker. It ran in the public schema once per tenant (the
    library stamped the entry with the schema it was stored in), failing there and never expiring a tenant's
    exports."""
    import json
    import time
    from datetime import timedelta

    from django.utils import timezone

    from audit.models import AuditEntry, GdprJob
    from tests.conftest import subprocess_env

    jobs = {}
    for schema, tenant in tenants.items():
        with schema_context(tenant.schema_name):
            jobs[schema] = GdprJob.objects.create(kind=GdprJob.Kind.EXPORT, status=GdprJob.Status.DONE,
                                                  expires_at=timezone.now() - timedelta(minutes=1)).pk
    script = (
        "import django, json, sys; django.setup()\n"
        "from django.conf import settings; from django.utils.module_loading import import_string\n"
        "from config.celery import app\n"
        "cls = import_string(settings.CELERY_BEAT_SCHEDULER.replace(':', '.'))\n"
        "s = cls(app=app, lazy=True); s.setup_schedule()\n"
        # Read from the database, as beat does each time it takes the beat lock (PlatformBeatScheduler._hold_lock).
        "s._initial_read = True\n"
        "entry = s.schedule['export-expiry@__all_tenants_only__']\n"
        "entry.options['queue'] = sys.argv[1]\n"
        "s.apply_entry(entry)\n"
        "print(json.dumps(entry.options['headers']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, celery_worker_process.queue], cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        deadline = time.monotonic() + 60  # the worker's own pace; not a performance limit
        pending = dict(jobs)
        while pending and time.monotonic() < deadline:
            for schema, pk in list(pending.items()):
                with schema_context(tenants[schema].schema_name):
                    if GdprJob.objects.get(pk=pk).status == GdprJob.Status.EXPIRED:
                        del pending[schema]
            time.sleep(0.2)
        log = celery_worker_process.log.read_text(errors="replace")
        assert not pending, f"exports not expired in {sorted(pending)}; worker log:\n{log[-3000:]}"
        assert "does not exist" not in log  # no run in the public schema, where the tenant tables are missing
        for schema, pk in jobs.items():  # each tenant's own trail records its expiry
            with schema_context(tenants[schema].schema_name):
                assert AuditEntry.objects.filter(event_type="export_expired", metadata__job=str(pk)).exists()
        # The entry carries no schema of its own: each message gets its tenant's.
        assert "_schema_name" not in json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for schema, pk in jobs.items():
            with schema_context(tenants[schema].schema_name):
                GdprJob.objects.filter(pk=pk).delete()

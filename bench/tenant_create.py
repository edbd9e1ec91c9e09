"""Provision N tenants (default 20) and print seconds per tenant.

Uses its own database (atrium_bench_tenants on DATABASE_URL's server, default the local PostgreSQL),
which it creates, migrates and drops. Final line: {"tenants": N, "seconds_per_tenant": …}.

    .venv/bin/python bench/tenant_create.py [N]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
BENCH_DB = "atrium_bench_tenants"
server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atrium").rsplit("/", 1)[0]
os.environ["DATABASE_URL"] = f"{server}/{BENCH_DB}"


def main() -> None:
    import django
    import psycopg

    admin_url = f"{server}/postgres".replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    django.setup()
    from django.core.management import call_command

    from tenants.services import tenant_provision, tenant_public_ensure, tenant_template_sync

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    tenant_public_ensure(domain="localhost")
    started = time.perf_counter()
    tenant_template_sync()
    template_s = time.perf_counter() - started
    print(f"template schema migrated once in {template_s:.2f}s")

    timings = []
    for index in range(count):
        started = time.perf_counter()
        tenant_provision(slug=f"bench{index:03d}", name=f"Bench {index}", admin_email=f"admin{index}@example.com")
        timings.append(time.perf_counter() - started)
    print(f"per tenant: median {statistics.median(timings):.3f}s  max {max(timings):.3f}s  min {min(timings):.3f}s")

    from django.db import connections

    connections.close_all()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    print(json.dumps({"tenants": count, "seconds_per_tenant": round(statistics.mean(timings), 3)}))


if __name__ == "__main__":
    main()

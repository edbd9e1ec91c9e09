"""Shared set-up for the benchmarks: a private, freshly migrated database on DATABASE_URL's server."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
SERVER = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atrium").rsplit("/", 1)[0]
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")


def bench_database(name: str) -> str:
    """Drop and create `name`, point DATABASE_URL at it, set Django up and migrate. Returns the URL."""
    import psycopg

    admin_url = f"{SERVER}/postgres".replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = f"{SERVER}/{name}"
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    return url


def bench_tenant(slug: str = "bench") -> Any:
    from tenants.services import tenant_provision, tenant_public_ensure

    tenant_public_ensure(domain="localhost")
    return tenant_provision(slug=slug, name=slug.title()).tenant


def emit(result: dict[str, Any]) -> None:
    import json

    print(json.dumps(result), flush=True)


def module_from_file(name: str, path: Path | str) -> ModuleType:
    """Load the Python file at `path` as module `name` (e.g. a baseline tree's copy of a module, for an in-process
    A/B beside this tree's). It is in sys.modules under `name` while it runs and after (dataclasses look their
    module up there); a caller loading it under a name of this tree's own puts the original back itself."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
